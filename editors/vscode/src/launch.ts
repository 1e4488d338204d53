// What the debug configuration provider decides about a launch, without VS Code: whether tether
// takes part, with which target and config file, and how a patched configuration is marked so
// that it is never patched twice. The patch itself is the daemon's (`tether/prepareLaunch`).

import type { Diagnostic, PrepareLaunchResult } from './protocol';

/** The field a patched configuration carries: restarts and child sessions pass it through. */
export const MARK = '__tether';

export interface Mark {
  sessionId: string;
  /** The configuration as it was before the patch (for "restart" from the panel). */
  target?: string;
}

export type LaunchConfig = Record<string, unknown>;

/** A launch configuration's own `tether` field: `true`/`false`, or an object that enables it. */
export interface PerLaunch {
  enabled?: boolean;
  target?: string;
  configPath?: string;
}

export function perLaunch(config: LaunchConfig): PerLaunch {
  const t = config.tether;
  if (typeof t === 'boolean') return { enabled: t };
  if (t && typeof t === 'object' && !Array.isArray(t)) {
    const o = t as Record<string, unknown>;
    return {
      enabled: typeof o.enabled === 'boolean' ? o.enabled : true,
      target: typeof o.target === 'string' && o.target ? o.target : undefined,
      configPath: typeof o.config === 'string' && o.config ? o.config : undefined,
    };
  }
  return {};
}

export function markOf(config: LaunchConfig): Mark | undefined {
  const m = config[MARK];
  if (m && typeof m === 'object' && typeof (m as Mark).sessionId === 'string') return m as Mark;
  return undefined;
}

export type Decision =
  | { kind: 'skip'; reason: 'disabled' | 'already-patched' | 'child-session' | 'no-type' }
  | { kind: 'attach'; explicit: boolean }
  | { kind: 'prepare'; target?: string; configPath?: string };

/**
 * Whether and how tether takes part in a launch. `enabled` is the status-bar toggle for the
 * folder; a configuration's `tether` field wins over it.
 */
export function decide(config: LaunchConfig, enabled: boolean): Decision {
  if (markOf(config)) return { kind: 'skip', reason: 'already-patched' };
  // js-debug starts a child session per process (an attach to `__pendingTargetId`); the
  // process itself was launched with the parent's patched environment.
  if ('__pendingTargetId' in config || '__parentId' in config || '__jsDebugChildServer' in config) {
    return { kind: 'skip', reason: 'child-session' };
  }
  const own = perLaunch(config);
  const on = own.enabled ?? enabled;
  if (!on) return { kind: 'skip', reason: 'disabled' };
  if (typeof config.type !== 'string' || !config.type) return { kind: 'skip', reason: 'no-type' };
  if (config.request === 'attach') return { kind: 'attach', explicit: own.enabled === true };
  return { kind: 'prepare', target: own.target, configPath: own.configPath };
}

/** The launch as sent to the daemon: without the extension's own field. */
export function forDaemon(config: LaunchConfig): LaunchConfig {
  const { tether: _own, ...rest } = config;
  return rest;
}

/** The configuration the debugger gets: the daemon's patch, marked. */
export function patched(result: PrepareLaunchResult, original: LaunchConfig, target: string | undefined): LaunchConfig {
  const launch: LaunchConfig = { ...result.launch };
  if ('tether' in original) launch.tether = original.tether;
  const mark: Mark = { sessionId: result.sessionId ?? '' };
  if (target) mark.target = target;
  launch[MARK] = mark;
  return launch;
}

const ORDER = { error: 0, warning: 1, info: 2 } as const;

/** Errors first, then warnings, then information. */
export function sortDiagnostics(ds: Diagnostic[]): Diagnostic[] {
  return [...ds].sort((a, b) => (ORDER[a.severity] ?? 3) - (ORDER[b.severity] ?? 3));
}

/** The launch stops when the daemon gave no session or reported an error. */
export function stopped(result: PrepareLaunchResult): boolean {
  return !result.sessionId || result.diagnostics.some((d) => d.severity === 'error');
}

/** One line for a diagnostic, as the output channel shows it. */
export function describe(d: Diagnostic): string {
  let line = `[${d.severity}] ${d.message} (${d.id})`;
  if (d.fix) line += d.fix.applied ? `\n    fixed: ${d.fix.description}` : `\n    fix: ${d.fix.description}`;
  return line;
}

/** A button's label for a fix the user can apply, e.g. "Apply port_mapping". */
export function fixLabel(d: Diagnostic): string | undefined {
  const edit = d.fix?.edit;
  if (!d.fix || d.fix.applied || !edit || typeof edit !== 'object' || Array.isArray(edit)) return undefined;
  const keys = Object.keys(edit as object);
  if (keys.length === 0) return undefined;
  const names = keys.map((k) => (k.startsWith('launch.') ? k : k.split('.').pop() ?? k));
  return `Apply ${names.join(', ')}`;
}

/** The env a patched launch sets, for the log: LD_PRELOAD and tether's own variables. */
export function envSummary(result: PrepareLaunchResult): string {
  const names = Object.keys(result.env).sort();
  const tether = names.filter((n) => n.startsWith('TETHER_') || n === 'LD_PRELOAD' || n === 'DYLD_INSERT_LIBRARIES');
  const others = names.length - tether.length;
  const unset = result.envUnset.length;
  return `${tether.join(', ')} + ${others} variable(s) of the target${unset ? `, ${unset} removed` : ''}`;
}
