// The debug configuration provider for every debug type, and what ties a debug session to its
// tether session: `tether/prepareLaunch` before the launch, `tether/launchEnded` after it.

import * as vscode from 'vscode';

import type { Daemon } from './daemon';
import { configFileOf, type Findings, type LaunchContext } from './findings';
import { decide, envSummary, forDaemon, markOf, MARK, patched, perLaunch, stopped, type LaunchConfig } from './launch';
import { Methods, type DoctorResult, type PrepareLaunchResult } from './protocol';
import type { Targets } from './targetPicker';

/** How long a terminated debug session's tether session waits for a restart before it ends. */
const END_GRACE_MS = 3000;
/** A prepared launch whose debug session never starts (another provider cancelled it) ends. */
const NEVER_STARTED_MS = 120_000;

export interface Launched {
  sessionId: string;
  folder: vscode.WorkspaceFolder;
  /** The configuration before tether patched it (what "restart" launches again). */
  original: LaunchConfig;
  debugSession?: vscode.DebugSession;
  ctx: LaunchContext;
  timer?: ReturnType<typeof setTimeout>;
}

export function enabledFor(folder: vscode.WorkspaceFolder | undefined): boolean {
  return vscode.workspace.getConfiguration('tether', folder?.uri).get<boolean>('enabled') ?? false;
}

export class Launcher implements vscode.DebugConfigurationProvider, vscode.Disposable {
  /** Launches of this window, by tether session id. */
  readonly launched = new Map<string, Launched>();
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly targets: Targets,
    private readonly findings: Findings,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.subscriptions.push(
      vscode.debug.registerDebugConfigurationProvider('*', this),
      vscode.debug.onDidStartDebugSession((s) => this.started(s)),
      vscode.debug.onDidTerminateDebugSession((s) => this.terminated(s)),
      // A tracker is made for every debug adapter, also when a session restarts in place.
      vscode.debug.registerDebugAdapterTrackerFactory('*', {
        createDebugAdapterTracker: (s) => {
          this.started(s);
          return undefined;
        },
      }),
    );
  }

  async resolveDebugConfigurationWithSubstitutedVariables(
    folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
    token?: vscode.CancellationToken,
  ): Promise<vscode.DebugConfiguration | undefined> {
    folder ??= vscode.workspace.workspaceFolders?.[0];
    const decision = decide(config, enabledFor(folder));
    if (decision.kind === 'skip') {
      if (decision.reason === 'already-patched') this.log.debug(`"${config.name}" is already patched (session ${markOf(config)?.sessionId})`);
      return config;
    }
    if (!folder) {
      void vscode.window.showErrorMessage(
        'Tether: this launch has no workspace folder, so there is no .tether/tether.json and no project to keep local. Open the project folder and start debugging again.',
      );
      return undefined;
    }
    const own = perLaunch(config);
    const ctx: LaunchContext = {
      folder,
      launchName: typeof config.name === 'string' ? config.name : undefined,
      configFile: configFileOf(folder, own.configPath),
      relaunch: (without) => this.relaunch(folder!, config, without),
    };
    if (decision.kind === 'attach') return this.attach(config, ctx, token);

    const chosen = await this.targets.forLaunch(folder, decision.target, decision.configPath);
    if (!chosen) {
      void vscode.window.showWarningMessage(
        `Tether: "${config.name}" was not started: no target was chosen. Pick one (status bar → Pick Target), set "target" in .tether/tether.json, or turn tether off for this launch.`,
      );
      return undefined;
    }
    if (token?.isCancellationRequested) return undefined;
    this.log.info(`preparing "${config.name}" (${config.type}) in ${chosen.shown} (target from the ${chosen.source})`);

    let result: PrepareLaunchResult;
    try {
      result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: `Tether: preparing ${chosen.shown}` },
        () =>
          this.daemon.request<PrepareLaunchResult>(
            Methods.prepareLaunch,
            {
              launch: forDaemon(config),
              workspaceFolder: folder!.uri.fsPath,
              configPath: decision.configPath ? ctx.configFile.fsPath : undefined,
              target: chosen.target,
              // The daemon may have been started elsewhere: name this window's cluster.
              kubeconfig: process.env.KUBECONFIG || undefined,
            },
            token,
          ),
      );
    } catch (e) {
      if (token?.isCancellationRequested) {
        this.log.info(`"${config.name}" was cancelled while tether prepared it`);
        return undefined;
      }
      const why = e instanceof Error ? e.message : String(e);
      this.log.error(`tether/prepareLaunch failed: ${why}`);
      await this.daemonFailed(`"${config.name}" was not started`, why, ctx);
      return undefined;
    }
    this.findings.logAll(`tether/prepareLaunch for "${config.name}": ${result.diagnostics.length} finding(s)`, result.diagnostics);
    if (stopped(result)) {
      void this.findings.showStopped(`Tether stopped "${config.name}"`, result.diagnostics, ctx);
      return undefined;
    }
    const sessionId = result.sessionId!;
    this.log.info(`session ${sessionId}: ${envSummary(result)}`);
    const entry: Launched = { sessionId, folder, original: { ...config }, ctx };
    entry.timer = setTimeout(() => this.end(sessionId, 'its debug session never started'), NEVER_STARTED_MS);
    this.launched.set(sessionId, entry);
    for (const d of result.diagnostics.filter((d) => d.severity === 'warning')) {
      void this.findings.showFinding(d, ctx);
    }
    return patched(result, config, chosen.target) as vscode.DebugConfiguration;
  }

  /** `request: attach`: tether joins programs when they start. Say so, with the daemon's words. */
  private async attach(config: LaunchConfig, ctx: LaunchContext, token?: vscode.CancellationToken): Promise<undefined> {
    let message =
      'an attach configuration cannot be joined: tether loads into a program when it starts. Use a launch configuration, or start the program with `tether exec -- COMMAND` and attach to it.';
    try {
      const r = await this.daemon.request<DoctorResult>(
        Methods.doctor,
        { launch: forDaemon(config), workspaceFolder: ctx.folder.uri.fsPath },
        token,
      );
      const d = r.diagnostics.find((d) => d.id === 'launch-attach') ?? r.diagnostics.find((d) => d.severity === 'error');
      if (d) message = `${d.message}${d.fix ? ` ${d.fix.description}` : ''}`;
    } catch (e) {
      this.log.warn(`tether/doctor for an attach configuration: ${e}`);
    }
    this.log.warn(`"${config.name}" (attach): ${message}`);
    const choice = await vscode.window.showErrorMessage(`Tether: "${config.name}": ${message}`, 'Attach without Tether', 'Show Details');
    if (choice === 'Attach without Tether') await ctx.relaunch?.(true);
    if (choice === 'Show Details') this.log.show(true);
    return undefined;
  }

  private async daemonFailed(title: string, why: string, ctx: LaunchContext): Promise<void> {
    const settings = 'Open Settings';
    const logs = 'Show Logs';
    const without = 'Debug without Tether';
    const choice = await vscode.window.showErrorMessage(`Tether: ${title}: ${why}`, settings, logs, without);
    if (choice === settings) await vscode.commands.executeCommand('workbench.action.openSettings', 'tether.');
    if (choice === logs) this.log.show(true);
    if (choice === without) await ctx.relaunch?.(true);
  }

  /** Starts a configuration again; `withoutTether` sets its `tether` field to false. */
  relaunch(folder: vscode.WorkspaceFolder, config: LaunchConfig, withoutTether: boolean): Thenable<boolean> {
    const { [MARK]: _mark, ...rest } = config;
    const next = { ...rest, ...(withoutTether ? { tether: false } : {}) } as vscode.DebugConfiguration;
    return vscode.debug.startDebugging(folder, next);
  }

  private started(s: vscode.DebugSession): void {
    const mark = markOf(s.configuration);
    if (!mark) return;
    const entry = this.launched.get(mark.sessionId);
    if (!entry) return;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    if (!s.parentSession && (!entry.debugSession || entry.debugSession.id === s.id)) entry.debugSession = s;
  }

  private terminated(s: vscode.DebugSession): void {
    const mark = markOf(s.configuration);
    if (!mark) return;
    const entry = this.launched.get(mark.sessionId);
    if (!entry || entry.debugSession?.id !== s.id) return;
    // A restart starts the same configuration again at once: wait a moment before ending.
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.end(mark.sessionId, 'its debug session ended'), END_GRACE_MS);
    entry.debugSession = undefined;
  }

  /** Ends a launch's tether session (`tether/launchEnded`). */
  end(sessionId: string, why: string): void {
    const entry = this.launched.get(sessionId);
    if (entry?.timer) clearTimeout(entry.timer);
    this.launched.delete(sessionId);
    this.log.info(`session ${sessionId} ends: ${why}`);
    this.daemon.notify(Methods.launchEnded, { sessionId });
  }

  /** Stops a session from the panel: its debug session too, when this window runs it. */
  async stop(sessionId: string): Promise<void> {
    const entry = this.launched.get(sessionId);
    if (entry?.debugSession) await vscode.debug.stopDebugging(entry.debugSession);
    await this.daemon.request(Methods.stopSession, { sessionId });
    this.end(sessionId, 'stopped from the Tether panel');
  }

  /** Restarts a session from the panel: its launch runs again with a fresh prepareLaunch. */
  async restart(sessionId: string, launchName: string | undefined): Promise<void> {
    const entry = this.launched.get(sessionId);
    if (!entry) {
      void vscode.window.showInformationMessage(
        `Tether: session ${sessionId}${launchName ? ` ("${launchName}")` : ''} was not launched from this window; start it again from Run and Debug.`,
      );
      return;
    }
    if (entry.debugSession) await vscode.debug.stopDebugging(entry.debugSession);
    this.end(sessionId, 'restarted from the Tether panel');
    await this.relaunch(entry.folder, entry.original, false);
  }

  dispose(): void {
    for (const e of this.launched.values()) if (e.timer) clearTimeout(e.timer);
    for (const d of this.subscriptions) d.dispose();
  }
}
