// Tether for VS Code: wires the daemon connection, the debug configuration provider, the
// target picker, the status bar and the sessions view together.

import { execFile } from 'child_process';
import * as vscode from 'vscode';

import { Daemon, settings, tetherEnv } from './daemon';
import { Findings } from './findings';
import { enabledFor, Launcher } from './launcher';
import { Methods, type ExplainPathResult, type SessionSnapshot, type SessionsResult } from './protocol';
import { SessionStore, statusText } from './sessions';
import { SessionsView } from './sessionsView';
import { Targets } from './targetPicker';
import type { Node } from './sessions';

let launcher: Launcher | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel('Tether', { log: true });
  const store = new SessionStore();
  const findings = new Findings(log);
  // `no-attach` arrives twice: as the session's diagnostic (shown below, with its fix) and as a
  // plain window/showMessage for the launching client.
  const daemon = new Daemon(log, (m) => /\(no-attach\)\s*$/.test(m.message));
  const targets = new Targets(daemon, context.workspaceState, log);
  launcher = new Launcher(daemon, targets, findings, log);
  const view = new SessionsView(store);
  const status = vscode.window.createStatusBarItem('tether.status', vscode.StatusBarAlignment.Left, 50);
  status.name = 'Tether';
  status.command = 'tether.menu';
  context.subscriptions.push(log, daemon, targets, launcher, view, status);

  const folder = () => {
    const editor = vscode.window.activeTextEditor?.document.uri;
    return (editor && vscode.workspace.getWorkspaceFolder(editor)) || vscode.workspace.workspaceFolders?.[0];
  };

  const updateStatus = async () => {
    const f = folder();
    const enabled = enabledFor(f);
    status.text = statusText(enabled, store.liveCount(), daemon.connected || !daemonFailed);
    const tip = new vscode.MarkdownString(undefined, true);
    tip.appendMarkdown(`**Tether** is ${enabled ? 'on' : 'off'} for debug launches${f ? ` in ${f.name}` : ''}.\n\n`);
    if (f) {
      const fromConfig = await targets.fromConfig(f);
      const target = fromConfig ?? targets.remembered(f);
      tip.appendMarkdown(
        target ? `Target: \`${target}\`${fromConfig ? ' (from .tether/tether.json)' : ''}\n\n` : 'Target: none chosen yet\n\n',
      );
    }
    tip.appendMarkdown(
      `${store.liveCount()} live session(s); daemon ${daemon.connected ? `connected (${daemon.version ?? '?'})` : 'not connected'}.\n\nClick for the menu.`,
    );
    status.tooltip = tip;
    status.show();
  };
  let daemonFailed = false;

  const refresh = async () => {
    try {
      const r = await daemon.request<SessionsResult>(Methods.sessions, null);
      store.replaceAll(r.sessions);
      daemonFailed = false;
    } catch (e) {
      daemonFailed = true;
      log.warn(`tether/sessions: ${e instanceof Error ? e.message : e}`);
    }
    view.refresh();
    await updateStatus();
  };

  context.subscriptions.push(
    daemon.onSessionChanged((s) => onSessionChanged(s)),
    daemon.onConnectedChanged((up) => {
      if (up) void refresh();
      else void updateStatus();
    }),
    targets.onDidChange(() => void updateStatus()),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('tether.path') || e.affectsConfiguration('tether.socket')) {
        void daemon.restart().catch((err) => log.error(String(err)));
      }
      if (e.affectsConfiguration('tether.enabled')) void updateStatus();
    }),
    vscode.window.onDidChangeActiveTextEditor(() => void updateStatus()),
  );

  function onSessionChanged(s: SessionSnapshot): void {
    const u = store.update(s);
    view.refresh();
    void updateStatus();
    const mine = launcher!.launched.get(s.id);
    if (!mine) return;
    if (u.isNew || u.stateChanged) log.info(`session ${s.id}: ${s.state}${s.endReason ? ` (${s.endReason})` : ''}`);
    if (s.state === 'failed' && u.stateChanged) {
      void vscode.window.showErrorMessage(`Tether: session ${s.id} failed: ${s.endReason ?? s.lastErrors.at(-1) ?? 'see the logs'}`);
    }
    for (const d of u.newDiagnostics) {
      findings.logAll(`session ${s.id} (${s.launchName ?? s.target}):`, [d]);
      const panel = 'Show Tether Panel';
      void findings.showFinding(d, mine.ctx, [panel]).then((choice) => {
        if (choice === panel) void view.reveal(s.id);
      });
    }
  }

  const setEnabled = async (on: boolean) => {
    const f = folder();
    const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    await vscode.workspace.getConfiguration('tether', f?.uri).update('enabled', on, target);
    log.info(`tether ${on ? 'enabled' : 'disabled'} for debug launches`);
    await updateStatus();
    if (on && f && !(await targets.fromConfig(f)) && !targets.remembered(f)) {
      const pick = 'Pick Target';
      if ((await vscode.window.showInformationMessage('Tether is on. Which target should launches run in?', pick)) === pick) {
        await targets.pick(f);
      }
    }
  };

  const sessionOf = (arg: Node | string | undefined): string | undefined =>
    typeof arg === 'string' ? arg : arg?.sessionId ?? view.view.selection[0]?.sessionId;

  const showLogs = async (sessionId?: string) => {
    log.show(true);
    const s = settings();
    const lines = await new Promise<string>((resolve) =>
      execFile(s.path, ['logs', '-n', '400'], { env: tetherEnv(s), maxBuffer: 16 << 20 }, (err, out, errOut) =>
        resolve(err ? `(tether logs failed: ${errOut || err.message})` : out),
      ),
    );
    const picked = sessionId ? lines.split('\n').filter((l) => l.includes(sessionId)) : lines.split('\n');
    log.info(`── daemon log${sessionId ? ` of session ${sessionId}` : ''} (tether logs) ──`);
    for (const l of picked.filter((l) => l.trim())) log.info(l);
    if (sessionId) {
      const snap = store.get(sessionId);
      for (const e of snap?.lastErrors ?? []) log.error(`session ${sessionId}: ${e}`);
      if (snap) findings.logAll(`session ${sessionId} diagnostics:`, snap.diagnostics);
    }
  };

  const reg = (id: string, fn: (...args: any[]) => unknown) => context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  reg('tether.toggle', () => setEnabled(!enabledFor(folder())));
  reg('tether.enable', () => setEnabled(true));
  reg('tether.disable', () => setEnabled(false));
  reg('tether.pickTarget', () => targets.pick(folder()));
  reg('tether.showPanel', () => view.reveal());
  reg('tether.showLogs', () => showLogs());
  reg('tether.refresh', () => refresh());
  reg('tether.restartDaemonConnection', () => daemon.restart().then(refresh, (e) => vscode.window.showErrorMessage(`Tether: ${e.message ?? e}`)));
  reg('tether.revealLogs', (n?: Node) => showLogs(sessionOf(n)));
  reg('tether.stopSession', async (n?: Node) => {
    const id = sessionOf(n);
    if (id) await launcher!.stop(id).catch((e) => vscode.window.showErrorMessage(`Tether: stopping ${id} failed: ${e.message ?? e}`));
  });
  reg('tether.restartSession', async (n?: Node) => {
    const id = sessionOf(n);
    if (id) await launcher!.restart(id, store.get(id)?.launchName ?? undefined);
  });
  reg('tether.explainPath', async () => {
    const f = folder();
    const path = await vscode.window.showInputBox({
      title: 'Tether: explain a path',
      prompt: 'Is this path read locally or from the target, and which rule decides?',
      value: vscode.window.activeTextEditor?.document.uri.fsPath ?? '/',
    });
    if (!path) return;
    try {
      const r = await daemon.request<ExplainPathResult>(Methods.explainPath, { path, workspaceFolder: f?.uri.fsPath });
      log.info(`explain-path: ${r.text}`);
      void vscode.window.showInformationMessage(`Tether: ${r.text}`);
    } catch (e) {
      void vscode.window.showErrorMessage(`Tether: ${e instanceof Error ? e.message : e}`);
    }
  });
  reg('tether.menu', async () => {
    const f = folder();
    const enabled = enabledFor(f);
    const target = f ? (await targets.fromConfig(f)) ?? targets.remembered(f) : undefined;
    const items: (vscode.QuickPickItem & { run: () => unknown })[] = [
      {
        label: enabled ? '$(circle-slash) Disable Tether for debug launches' : '$(plug) Enable Tether for debug launches',
        run: () => setEnabled(!enabled),
      },
      { label: '$(target) Pick target…', description: target ?? 'none chosen', run: () => targets.pick(f) },
      { label: '$(list-tree) Show sessions panel', description: `${store.liveCount()} live`, run: () => view.reveal() },
      { label: '$(output) Show logs', run: () => showLogs() },
      ...(!daemon.connected ? [{ label: '$(debug-restart) Reconnect to the daemon', run: () => daemon.restart().then(refresh) }] : []),
    ];
    const choice = await vscode.window.showQuickPick(items, { title: 'Tether', placeHolder: daemon.version ? `daemon ${daemon.version}` : undefined });
    await choice?.run();
  });

  await updateStatus();
  // Connect in the background: the status bar and the view fill in when the daemon answers.
  void refresh();
}

export function deactivate(): void {
  for (const id of [...(launcher?.launched.keys() ?? [])]) launcher?.end(id, 'the window closed');
  launcher = undefined;
}
