// Choosing the target: a launch configuration's own `tether.target`; else the config file's
// `target`, which wins over the picker; else the last choice for the workspace folder; else the
// picker (a quick pick fed by `tether/listTargets`).

import * as vscode from 'vscode';

import type { Daemon } from './daemon';
import { configTarget } from './fixes';
import { configFileOf } from './findings';
import { Methods, type ListTargetsResult } from './protocol';
import { pickItems } from './targets';

const KEY = 'tether.target:';

export type TargetSource = 'config file' | 'launch configuration' | 'remembered' | 'picked';

export interface ChosenTarget {
  /** Undefined when the config file names it (the daemon reads it there). */
  target?: string;
  shown: string;
  source: TargetSource;
}

export class Targets {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly daemon: Daemon,
    private readonly memento: vscode.Memento,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  remembered(folder: vscode.WorkspaceFolder): string | undefined {
    return this.memento.get<string>(KEY + folder.uri.toString());
  }

  async remember(folder: vscode.WorkspaceFolder, target: string | undefined): Promise<void> {
    await this.memento.update(KEY + folder.uri.toString(), target);
    this.changed.fire();
  }

  /** The target the folder's config file sets, if any. */
  async fromConfig(folder: vscode.WorkspaceFolder, configPath?: string): Promise<string | undefined> {
    try {
      const bytes = await vscode.workspace.fs.readFile(configFileOf(folder, configPath));
      return configTarget(new TextDecoder().decode(bytes));
    } catch {
      return undefined;
    }
  }

  /**
   * The target of a launch: the configuration's own `tether.target`, else the config file's
   * (the daemon reads it there), else the folder's last choice, else the picker's.
   * Undefined: the user cancelled.
   */
  async forLaunch(folder: vscode.WorkspaceFolder, own?: string, configPath?: string): Promise<ChosenTarget | undefined> {
    if (own) return { target: own, shown: own, source: 'launch configuration' };
    const fromConfig = await this.fromConfig(folder, configPath);
    if (fromConfig) return { shown: fromConfig, source: 'config file' };
    const last = this.remembered(folder);
    if (last) return { target: last, shown: last, source: 'remembered' };
    const picked = await this.pick(folder, 'Tether: which target should this launch run in?');
    return picked ? { target: picked, shown: picked, source: 'picked' } : undefined;
  }

  /** The picker; remembers the choice for the folder. */
  async pick(folder: vscode.WorkspaceFolder | undefined, title = 'Tether: pick a target'): Promise<string | undefined> {
    folder ??= await this.folder();
    if (!folder) return undefined;
    const fromConfig = await this.fromConfig(folder);
    const current = this.remembered(folder);
    let namespace: string | undefined;
    for (;;) {
      const qp = vscode.window.createQuickPick<vscode.QuickPickItem & { path?: string; action?: string }>();
      qp.title = title;
      qp.placeholder = fromConfig
        ? `${vscode.workspace.asRelativePath(configFileOf(folder))} sets the target ${fromConfig}: it wins over this choice`
        : 'Type to filter; the choice is remembered for this folder';
      qp.matchOnDescription = true;
      qp.matchOnDetail = true;
      qp.busy = true;
      qp.show();
      const fixed = [
        { label: '$(edit) Enter a target path…', description: 'pid:1234, pod/NAME, deployment/NAME/container/NAME, targetless', action: 'enter' },
        { label: `$(symbol-namespace) Namespace: ${namespace ?? 'default'}`, description: 'list another namespace', action: 'namespace' },
        ...(current ? [{ label: '$(close) Forget the remembered target', description: current, action: 'forget' }] : []),
      ];
      qp.items = fixed;
      this.daemon
        .request<ListTargetsResult>(Methods.listTargets, { namespace, kubeconfig: process.env.KUBECONFIG || undefined })
        .then((r) => {
          qp.items = [
            ...fixed,
            ...pickItems(r.targets, current).map((i) =>
              i.separator ? { label: i.label, kind: vscode.QuickPickItemKind.Separator } : { ...i },
            ),
          ];
          const active = qp.items.find((i) => i.path === current);
          if (active) qp.activeItems = [active];
        })
        .catch((e) => {
          qp.placeholder = `Listing targets failed: ${e instanceof Error ? e.message : e}`;
          this.log.error(`tether/listTargets: ${e}`);
        })
        .finally(() => (qp.busy = false));
      const choice = await new Promise<(vscode.QuickPickItem & { path?: string; action?: string }) | undefined>((resolve) => {
        qp.onDidAccept(() => resolve(qp.selectedItems[0]));
        qp.onDidHide(() => resolve(undefined));
      });
      qp.dispose();
      if (!choice) return undefined;
      if (choice.action === 'namespace') {
        const ns = await vscode.window.showInputBox({ title: 'Kubernetes namespace', value: namespace ?? '' });
        if (ns !== undefined) namespace = ns.trim() || undefined;
        continue;
      }
      if (choice.action === 'forget') {
        await this.remember(folder, undefined);
        return undefined;
      }
      let path = choice.path;
      if (choice.action === 'enter') {
        path = (
          await vscode.window.showInputBox({
            title: 'Target path',
            prompt: 'pid:1234, pod/NAME, deployment/NAME/container/NAME or targetless',
            value: current ?? '',
            validateInput: (v) => (v.trim() ? undefined : 'a target path'),
          })
        )?.trim();
      }
      if (!path) return undefined;
      await this.remember(folder, path);
      this.log.info(`target for ${folder.name}: ${path}`);
      return path;
    }
  }

  private async folder(): Promise<vscode.WorkspaceFolder | undefined> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (folders.length <= 1) return folders[0];
    return vscode.window.showWorkspaceFolderPick({ placeHolder: 'The workspace folder to pick a target for' });
  }

  dispose(): void {
    this.changed.dispose();
  }
}
