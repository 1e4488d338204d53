// Applying a diagnostic's `fix.edit` (docs/doctor.md): the keys say where a change goes.
//   - a dotted config key (`feature.network.incoming.port_mapping`): the config file; objects are
//     merged key by key, lists are appended to;
//   - `launch.FIELD`: a field of the launch configuration (in .vscode/launch.json, found by name);
//   - a file name (`turbo.json`): keys to set in that file, in the workspace folder.
// The text edits keep the file's formatting and comments (jsonc-parser).

import { applyEdits, findNodeAtLocation, getNodeValue, modify, parseTree, type JSONPath } from 'jsonc-parser';

/** Top-level keys of the config file (schemas/tether.schema.json). */
const CONFIG_KEYS = new Set(['$schema', 'target', 'agent', 'feature', 'layer', 'skip_processes']);

export type EditTarget = { kind: 'config' } | { kind: 'launch' } | { kind: 'file'; name: string };

export interface Change {
  /** Where in the file, as keys. */
  path: string[];
  value: unknown;
  /** Merge objects key by key and append to lists (config and launch keys), or replace (files). */
  merge: boolean;
}

export interface FileEdit {
  target: EditTarget;
  changes: Change[];
}

/** Groups an edit's keys by the file they change. */
export function planEdit(edit: unknown): FileEdit[] {
  if (!edit || typeof edit !== 'object' || Array.isArray(edit)) return [];
  const out: FileEdit[] = [];
  const add = (target: EditTarget, change: Change) => {
    const same = out.find((f) => JSON.stringify(f.target) === JSON.stringify(target));
    if (same) same.changes.push(change);
    else out.push({ target, changes: [change] });
  };
  for (const [key, value] of Object.entries(edit as Record<string, unknown>)) {
    if (key.startsWith('launch.')) {
      add({ kind: 'launch' }, { path: key.slice('launch.'.length).split('.'), value, merge: true });
    } else if (CONFIG_KEYS.has(key.split('.')[0])) {
      add({ kind: 'config' }, { path: key.split('.'), value, merge: true });
    } else if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        add({ kind: 'file', name: key }, { path: [k], value: v, merge: false });
      }
    }
  }
  return out;
}

const FORMAT = { formattingOptions: { insertSpaces: true, tabSize: 2, eol: '\n' } };

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function setAt(text: string, path: JSONPath, value: unknown): string {
  return applyEdits(text, modify(text, path, value, FORMAT));
}

function valueAt(text: string, path: JSONPath): unknown {
  const root = parseTree(text);
  if (!root) return undefined;
  const node = findNodeAtLocation(root, path);
  return node ? getNodeValue(node) : undefined;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Applies one change under `prefix`: objects merge, lists append what they lack. */
function applyChange(text: string, prefix: JSONPath, change: Change): string {
  const path = [...prefix, ...change.path];
  const current = valueAt(text, path);
  if (!change.merge) return setAt(text, path, change.value);
  if (Array.isArray(change.value) && Array.isArray(current)) {
    let length = current.length;
    for (const item of change.value) {
      if (current.some((c) => same(c, item))) continue;
      text = applyEdits(text, modify(text, [...path, length], item, { ...FORMAT, isArrayInsertion: true }));
      length++;
    }
    return text;
  }
  if (isObject(change.value) && isObject(current)) {
    for (const [k, v] of Object.entries(change.value)) {
      text = applyChange(text, path, { path: [k], value: v, merge: true });
    }
    return text;
  }
  return setAt(text, path, change.value);
}

/** The file's new text; `text` may be empty (a new file). `prefix` places the changes (launch.json). */
export function applyChanges(text: string, changes: Change[], prefix: JSONPath = []): string {
  if (!text.trim()) text = '{}\n';
  for (const c of changes) text = applyChange(text, prefix, c);
  return text;
}

/** The index of the configuration named `name` in a launch.json text. */
export function launchIndex(launchJson: string, name: string): number | undefined {
  const configs = valueAt(launchJson, ['configurations']);
  if (!Array.isArray(configs)) return undefined;
  const i = configs.findIndex((c) => isObject(c) && c.name === name);
  return i < 0 ? undefined : i;
}

/** What an edit will change, for a confirmation or a log line. */
export function describeEdit(plan: FileEdit[], configFile: string): string {
  return plan
    .map((f) => {
      const file = f.target.kind === 'config' ? configFile : f.target.kind === 'launch' ? 'the launch configuration' : f.target.name;
      const what = f.changes.map((c) => `${c.path.join('.')} ${c.merge ? '+=' : '='} ${JSON.stringify(c.value)}`);
      return `${file}: ${what.join(', ')}`;
    })
    .join('; ');
}

/** The target a config file sets (`target` or `target.path`), if any: it wins over the picker. */
export function configTarget(configText: string): string | undefined {
  const t = valueAt(configText, ['target']);
  if (typeof t === 'string' && t) return t;
  if (isObject(t) && typeof t.path === 'string' && t.path) return t.path;
  return undefined;
}
