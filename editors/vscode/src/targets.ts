// The target picker's items from `tether/listTargets`, grouped by namespace and kind, with one
// item per container for multi-container pods. No VS Code here.

import type { Target } from './protocol';

export interface PickItem {
  /** What to pass as `target`; undefined for separators. */
  path?: string;
  label: string;
  description?: string;
  detail?: string;
  separator?: boolean;
}

function group(t: Target): string {
  const kind = t.kind === 'process' ? 'local processes' : t.kind;
  return t.namespace ? `${t.namespace} · ${kind}` : kind;
}

function short(exe: string): string {
  const i = exe.lastIndexOf('/');
  return i >= 0 ? exe.slice(i + 1) : exe;
}

/**
 * The picker's rows: a separator per group, then the targets (a pod with several containers
 * gets one row per container, `PATH/container/NAME`). `current` is marked.
 */
export function pickItems(targets: Target[], current?: string): PickItem[] {
  const groups = new Map<string, Target[]>();
  for (const t of targets) {
    const g = group(t);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(t);
  }
  const out: PickItem[] = [];
  for (const [name, list] of groups) {
    out.push({ label: name, separator: true });
    for (const t of list) {
      const detail = t.cmdline.length ? t.cmdline.join(' ') : t.executable;
      const rows =
        t.containers.length > 1
          ? t.containers.map((c) => ({ path: `${t.path}/container/${c}`, label: `${t.path}/container/${c}`, description: c }))
          : [{ path: t.path, label: t.path, description: t.containers[0] ?? short(t.executable) }];
      for (const r of rows) {
        out.push({
          ...r,
          description: r.path === current ? `${r.description} (current)` : r.description,
          detail,
        });
      }
    }
  }
  return out;
}

/** Whether a remembered target still exists among the listed ones (local pids come and go). */
export function stillListed(targets: Target[], path: string): boolean {
  return targets.some((t) => t.path === path || path.startsWith(`${t.path}/container/`));
}
