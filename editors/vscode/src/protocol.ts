// The editor protocol's types, as described in schemas/editor-protocol.json (the daemon's
// machine-readable description). Only what the extension uses; field names are the wire names.

export type Severity = 'error' | 'warning' | 'info';

export interface Fix {
  /** `true`: tether applied it to the launch; `false`: the user has to. */
  applied: boolean;
  description: string;
  /**
   * A machine-usable suggestion: keys are dotted config keys (objects merge, lists append),
   * `launch.FIELD`, or a file name (keys to set in that file).
   */
  edit?: unknown;
}

export interface Diagnostic {
  id: string;
  severity: Severity;
  message: string;
  fix?: Fix | null;
}

export interface PrepareLaunchParams {
  launch: object;
  workspaceFolder: string;
  configPath?: string | null;
  target?: string | null;
  workDoneToken?: string | number | null;
}

export interface PrepareLaunchResult {
  /** `null` when a diagnostic of severity `error` stopped the launch. */
  sessionId?: string | null;
  launch: Record<string, unknown>;
  env: Record<string, string>;
  envUnset: string[];
  diagnostics: Diagnostic[];
}

export interface DoctorParams {
  launch: object;
  workspaceFolder: string;
  configPath?: string | null;
}

export interface DoctorResult {
  diagnostics: Diagnostic[];
}

export interface Target {
  path: string;
  kind: string;
  executable: string;
  cmdline: string[];
  containers: string[];
  namespace?: string | null;
  pid?: number | null;
}

export interface ListTargetsResult {
  targets: Target[];
}

export type SessionState = 'starting' | 'ready' | 'failed' | 'ended';

export interface ProcessInfo {
  pid: number;
  executable: string;
  since: number;
  skipped: boolean;
}

export interface Counters {
  connectionsOpen: number;
  connectionsTotal: number;
  bytesIn: number;
  bytesOut: number;
  filesRead: number;
  dnsLookups: number;
}

export interface AgentInfo {
  version: string;
  targetPid: number;
  capabilities: string[];
}

export interface SessionSnapshot {
  id: string;
  target: string;
  state: SessionState;
  agent?: AgentInfo | null;
  processes: ProcessInfo[];
  counters: Counters;
  lastErrors: string[];
  diagnostics: Diagnostic[];
  created: number;
  endReason?: string | null;
  launchName?: string | null;
  workspaceFolder?: string | null;
}

export interface SessionsResult {
  version: string;
  sessions: SessionSnapshot[];
}

export interface StopSessionResult {
  stopped: boolean;
}

export interface ExplainPathResult {
  path: string;
  read: { route: string; rule: string };
  write: { route: string; rule: string };
  text: string;
}

export const Methods = {
  prepareLaunch: 'tether/prepareLaunch',
  doctor: 'tether/doctor',
  listTargets: 'tether/listTargets',
  sessions: 'tether/sessions',
  stopSession: 'tether/stopSession',
  launchEnded: 'tether/launchEnded',
  explainPath: 'tether/explainPath',
  sessionChanged: 'tether/sessionChanged',
} as const;
