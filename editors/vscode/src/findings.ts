// Showing the daemon's diagnostics: notifications whose buttons apply the fixes
// (`fix.edit`, e.g. "Apply port_mapping" edits .tether/tether.json), and the output log.

import * as path from 'path';
import * as vscode from 'vscode';

import { applyChanges, describeEdit, launchIndex, planEdit, type FileEdit } from './fixes';
import { describe, fixLabel, sortDiagnostics } from './launch';
import type { Diagnostic } from './protocol';

/** Where a launch's files are. */
export interface LaunchContext {
  folder: vscode.WorkspaceFolder;
  /** The launch configuration's name (to find it in launch.json). */
  launchName?: string;
  /** The config file: `configPath` of the launch, else `.tether/tether.json`. */
  configFile: vscode.Uri;
  /** Starts the launch again (after a fix), with tether or (`withoutTether`) without. */
  relaunch?: (withoutTether: boolean) => Thenable<unknown>;
}

export function configFileOf(folder: vscode.WorkspaceFolder, configPath?: string): vscode.Uri {
  if (!configPath) return vscode.Uri.joinPath(folder.uri, '.tether', 'tether.json');
  return path.isAbsolute(configPath) ? vscode.Uri.file(configPath) : vscode.Uri.joinPath(folder.uri, configPath);
}

async function readText(uri: vscode.Uri): Promise<string | undefined> {
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
  if (open) return open.getText();
  try {
    return new TextDecoder().decode(await vscode.workspace.fs.readFile(uri));
  } catch {
    return undefined;
  }
}

/** Replaces a file's text through the editor (undo works, open editors follow) and saves it. */
async function writeText(uri: vscode.Uri, text: string, existed: boolean): Promise<void> {
  if (!existed) {
    await vscode.workspace.fs.createDirectory(vscode.Uri.joinPath(uri, '..'));
    await vscode.workspace.fs.writeFile(uri, new TextEncoder().encode(text));
    return;
  }
  const doc = await vscode.workspace.openTextDocument(uri);
  const edit = new vscode.WorkspaceEdit();
  edit.replace(uri, new vscode.Range(doc.positionAt(0), doc.positionAt(doc.getText().length)), text);
  if (!(await vscode.workspace.applyEdit(edit))) throw new Error(`the edit of ${uri.fsPath} was refused`);
  await doc.save();
}

export class Findings {
  constructor(private readonly log: vscode.LogOutputChannel) {}

  /** Writes every diagnostic to the log, under a header. */
  logAll(header: string, diagnostics: Diagnostic[]): void {
    if (!diagnostics.length) return;
    this.log.info(header);
    for (const d of sortDiagnostics(diagnostics)) {
      const line = describe(d);
      if (d.severity === 'error') this.log.error(line);
      else if (d.severity === 'warning') this.log.warn(line);
      else this.log.info(line);
    }
  }

  /**
   * The launch did not start: one error notification naming the first error, with a button per
   * applicable fix, details, and an explicit way to debug without tether.
   */
  async showStopped(title: string, diagnostics: Diagnostic[], ctx: LaunchContext | undefined): Promise<void> {
    const sorted = sortDiagnostics(diagnostics);
    const first = sorted[0];
    const more = sorted.filter((d) => d.severity === 'error').length - 1;
    const message = first
      ? `${title}: ${first.message}${first.fix && !first.fix.applied ? ` — ${first.fix.description}` : ''}${
          more > 0 ? ` (and ${more} more)` : ''
        }`
      : title;
    await this.offer('error', message, sorted, ctx, true);
  }

  /** A finding while the launch goes on (a warning, or `no-attach` from a running session). */
  async showFinding(d: Diagnostic, ctx: LaunchContext | undefined, extra: string[] = []): Promise<string | undefined> {
    const text = `Tether: ${d.message}${d.fix && !d.fix.applied ? ` — ${d.fix.description}` : ''}`;
    return this.offer(d.severity === 'error' ? 'error' : 'warning', text, [d], ctx, false, extra);
  }

  private async offer(
    level: 'error' | 'warning',
    message: string,
    diagnostics: Diagnostic[],
    ctx: LaunchContext | undefined,
    stopped: boolean,
    extra: string[] = [],
  ): Promise<string | undefined> {
    const fixes = new Map<string, Diagnostic>();
    if (ctx) {
      for (const d of diagnostics) {
        const label = fixLabel(d);
        if (label && !fixes.has(label)) fixes.set(label, d);
      }
    }
    const details = 'Show Details';
    const without = stopped && ctx?.relaunch ? ['Debug without Tether'] : [];
    const items = [...fixes.keys(), ...extra, details, ...without];
    const show = level === 'error' ? vscode.window.showErrorMessage : vscode.window.showWarningMessage;
    const choice = await show(message, ...items);
    if (!choice) return undefined;
    if (choice === details) {
      this.log.show(true);
    } else if (choice === 'Debug without Tether') {
      this.log.info('debugging without tether, as asked');
      await ctx!.relaunch!(true);
    } else if (fixes.has(choice)) {
      await this.apply(fixes.get(choice)!, ctx!, stopped);
    }
    return choice;
  }

  /** Applies a diagnostic's `fix.edit` to the files it names. */
  async apply(d: Diagnostic, ctx: LaunchContext, offerRelaunch: boolean): Promise<boolean> {
    const plan = planEdit(d.fix?.edit);
    if (!plan.length) return false;
    const summary = describeEdit(plan, vscode.workspace.asRelativePath(ctx.configFile));
    try {
      for (const f of plan) await this.applyFile(f, ctx);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.log.error(`applying the fix for ${d.id} failed: ${why}`);
      void vscode.window.showErrorMessage(`Tether: could not apply the fix (${why}). ${d.fix?.description ?? ''}`);
      return false;
    }
    this.log.info(`applied the fix for ${d.id}: ${summary}`);
    const again = 'Start Debugging Again';
    const choice = await vscode.window.showInformationMessage(
      `Tether: applied ${summary}`,
      ...(offerRelaunch && ctx.relaunch ? [again] : []),
    );
    if (choice === again) await ctx.relaunch!(false);
    return true;
  }

  private async applyFile(f: FileEdit, ctx: LaunchContext): Promise<void> {
    let uri: vscode.Uri;
    let prefix: (string | number)[] = [];
    if (f.target.kind === 'config') {
      uri = ctx.configFile;
    } else if (f.target.kind === 'file') {
      uri = vscode.Uri.joinPath(ctx.folder.uri, f.target.name);
    } else {
      uri = vscode.Uri.joinPath(ctx.folder.uri, '.vscode', 'launch.json');
      const text = (await readText(uri)) ?? '';
      const i = ctx.launchName ? launchIndex(text, ctx.launchName) : undefined;
      if (i === undefined) {
        throw new Error(`the launch configuration "${ctx.launchName ?? ''}" is not in ${vscode.workspace.asRelativePath(uri)}`);
      }
      prefix = ['configurations', i];
    }
    const before = await readText(uri);
    const after = applyChanges(before ?? '', f.changes, prefix);
    await writeText(uri, after, before !== undefined);
  }
}
