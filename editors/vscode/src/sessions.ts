// The sessions the daemon reports (`tether/sessions`, `tether/sessionChanged`) and the tree the
// "Tether" view shows of them. No VS Code here: the view turns these nodes into tree items.

import type { Diagnostic, SessionSnapshot } from './protocol';

/** Ended or failed sessions kept in the view. */
export const KEEP_ENDED = 10;

export function isLive(s: SessionSnapshot): boolean {
  return s.state === 'starting' || s.state === 'ready';
}

export interface Update {
  isNew: boolean;
  stateChanged: boolean;
  /** Diagnostics this session did not have before (e.g. `no-attach`). */
  newDiagnostics: Diagnostic[];
}

export class SessionStore {
  private readonly byId = new Map<string, SessionSnapshot>();

  /** Takes a `tether/sessionChanged` snapshot (always the whole session). */
  update(s: SessionSnapshot): Update {
    const old = this.byId.get(s.id);
    this.byId.set(s.id, s);
    const seen = new Set((old?.diagnostics ?? []).map(key));
    this.trim();
    return {
      isNew: !old,
      stateChanged: !!old && old.state !== s.state,
      newDiagnostics: (s.diagnostics ?? []).filter((d) => !seen.has(key(d))),
    };
  }

  /** Takes a `tether/sessions` answer: the daemon's whole list. */
  replaceAll(list: SessionSnapshot[]): void {
    this.byId.clear();
    for (const s of list) this.byId.set(s.id, s);
    this.trim();
  }

  clear(): void {
    this.byId.clear();
  }

  get(id: string): SessionSnapshot | undefined {
    return this.byId.get(id);
  }

  /** Live sessions first, newest first; then the most recently ended ones. */
  list(): SessionSnapshot[] {
    const all = [...this.byId.values()];
    const newest = (a: SessionSnapshot, b: SessionSnapshot) => b.created - a.created || b.id.localeCompare(a.id);
    return [...all.filter(isLive).sort(newest), ...all.filter((s) => !isLive(s)).sort(newest)];
  }

  liveCount(): number {
    return [...this.byId.values()].filter(isLive).length;
  }

  private trim(): void {
    const ended = [...this.byId.values()].filter((s) => !isLive(s)).sort((a, b) => b.created - a.created);
    for (const s of ended.slice(KEEP_ENDED)) this.byId.delete(s.id);
  }
}

function key(d: Diagnostic): string {
  return `${d.id}\u0000${d.message}`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** "12s", "3m 4s", "2h 5m" since `epochSeconds`. */
export function formatAge(epochSeconds: number, nowMs: number = Date.now()): string {
  const s = Math.max(0, Math.floor(nowMs / 1000 - epochSeconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export interface Node {
  id: string;
  label: string;
  description?: string;
  tooltip?: string;
  /** A codicon id; `color` a theme color id. */
  icon?: string;
  color?: string;
  /** For menus: `tetherSession.live`, `tetherSession.ended`. */
  contextValue?: string;
  sessionId?: string;
  children?: Node[];
  expanded?: boolean;
}

const STATE_ICON: Record<string, [string, string | undefined]> = {
  starting: ['loading~spin', undefined],
  ready: ['debug-start', 'debugIcon.startForeground'],
  failed: ['error', 'errorForeground'],
  ended: ['circle-outline', 'disabledForeground'],
};

const SEVERITY_ICON: Record<string, [string, string]> = {
  error: ['error', 'errorForeground'],
  warning: ['warning', 'editorWarning.foreground'],
  info: ['info', 'editorInfo.foreground'],
};

export function diagnosticNode(parent: string, d: Diagnostic, i: number): Node {
  const [icon, color] = SEVERITY_ICON[d.severity] ?? SEVERITY_ICON.info;
  const fix = d.fix ? `\n\n${d.fix.applied ? 'Fixed' : 'Fix'}: ${d.fix.description}` : '';
  return {
    id: `${parent}/diagnostic/${i}`,
    label: d.message,
    description: d.id,
    tooltip: `${d.message} (${d.id})${fix}`,
    icon,
    color,
    contextValue: 'tetherDiagnostic',
  };
}

/** A session with its details as children. */
export function sessionNode(s: SessionSnapshot, nowMs: number = Date.now()): Node {
  const id = `session/${s.id}`;
  const [icon, color] = STATE_ICON[s.state] ?? STATE_ICON.ended;
  const c = s.counters;
  const attached = s.processes.filter((p) => !p.skipped).length;
  const children: Node[] = [
    {
      id: `${id}/target`,
      label: 'target',
      description: s.agent ? `${s.target} · agent ${s.agent.version} (pid ${s.agent.targetPid})` : s.target,
      icon: 'target',
    },
    {
      id: `${id}/state`,
      label: 'state',
      description: s.endReason ? `${s.state}: ${s.endReason}` : `${s.state} · ${formatAge(s.created, nowMs)}`,
      tooltip: s.endReason ?? undefined,
      icon,
      color,
    },
    {
      id: `${id}/processes`,
      label: 'processes',
      description: `${attached} attached${s.processes.length > attached ? `, ${s.processes.length - attached} skipped` : ''}`,
      icon: 'server-process',
      expanded: s.processes.length > 0 && s.processes.length <= 5,
      children: s.processes.map((p) => ({
        id: `${id}/process/${p.pid}`,
        label: `${p.pid} ${basename(p.executable)}`,
        description: `${p.skipped ? 'skipped · ' : ''}${formatAge(p.since, nowMs)}`,
        tooltip: p.executable,
        icon: p.skipped ? 'circle-slash' : 'gear',
      })),
    },
    {
      id: `${id}/connections`,
      label: 'connections',
      description: `${c.connectionsOpen} open, ${c.connectionsTotal} total`,
      icon: 'plug',
    },
    {
      id: `${id}/bytes`,
      label: 'bytes',
      description: `in ${formatBytes(c.bytesIn)} · out ${formatBytes(c.bytesOut)}`,
      tooltip: 'Bytes through relayed connections. Sockets handed to the program directly run at kernel speed and are not counted.',
      icon: 'arrow-swap',
    },
    {
      id: `${id}/files`,
      label: 'files read',
      description: `${c.filesRead} · DNS lookups ${c.dnsLookups}`,
      icon: 'file',
    },
  ];
  if (s.diagnostics.length) {
    children.push({
      id: `${id}/diagnostics`,
      label: 'diagnostics',
      description: String(s.diagnostics.length),
      icon: 'report',
      expanded: true,
      children: s.diagnostics.map((d, i) => diagnosticNode(id, d, i)),
    });
  }
  if (s.lastErrors.length) {
    children.push({
      id: `${id}/errors`,
      label: 'last errors',
      description: String(s.lastErrors.length),
      icon: 'warning',
      color: 'errorForeground',
      expanded: true,
      // Newest first.
      children: [...s.lastErrors].reverse().map((e, i) => ({ id: `${id}/error/${i}`, label: e, tooltip: e, icon: 'circle-small' })),
    });
  }
  const live = isLive(s);
  return {
    id,
    sessionId: s.id,
    label: s.launchName || s.target,
    description: `${s.state} · ${s.target} · ${attached} process${attached === 1 ? '' : 'es'}`,
    tooltip: `Session ${s.id}\nTarget ${s.target}\nState ${s.state}${s.endReason ? ` (${s.endReason})` : ''}${
      s.workspaceFolder ? `\nFolder ${s.workspaceFolder}` : ''
    }`,
    icon,
    color,
    contextValue: live ? 'tetherSession.live' : 'tetherSession.ended',
    expanded: live,
    children,
  };
}

function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}

/** The status bar's text: enabled or not, and the live sessions. */
export function statusText(enabled: boolean, live: number, connected: boolean): string {
  if (!connected) return '$(debug-disconnect) Tether: no daemon';
  const count = live > 0 ? ` · ${live} session${live === 1 ? '' : 's'}` : '';
  return enabled ? `$(plug) Tether: on${count}` : `$(circle-slash) Tether: off${count}`;
}
