// The connection to the tether daemon: a language client that runs `tether lsp` (the stdio
// bridge, which starts the daemon when none runs). The same client serves the `tether/*` methods
// and the config files' diagnostics, completion and hover.

import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  MessageType,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type ServerOptions,
  type ShowMessageParams,
} from 'vscode-languageclient/node';

import { Methods, type SessionSnapshot } from './protocol';

export interface DaemonSettings {
  path: string;
  socket: string;
}

export function settings(): DaemonSettings {
  const c = vscode.workspace.getConfiguration('tether');
  return { path: c.get<string>('path')?.trim() || 'tether', socket: c.get<string>('socket')?.trim() || '' };
}

/** The environment `tether` runs with: the socket setting as TETHER_SOCKET. */
export function tetherEnv(s: DaemonSettings): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (s.socket) env.TETHER_SOCKET = s.socket;
  return env;
}

export class Daemon implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<LanguageClient> | undefined;
  private readonly sessionChanged = new vscode.EventEmitter<SessionSnapshot>();
  private readonly connectedChanged = new vscode.EventEmitter<boolean>();
  /** A session snapshot, whenever one changes (`tether/sessionChanged`). */
  readonly onSessionChanged = this.sessionChanged.event;
  /** Connected to the daemon, or not any more. */
  readonly onConnectedChanged = this.connectedChanged.event;
  version: string | undefined;

  constructor(
    private readonly log: vscode.LogOutputChannel,
    /** `window/showMessage` messages the extension shows itself (return true to drop them). */
    private readonly handledElsewhere: (m: ShowMessageParams) => boolean,
  ) {}

  get connected(): boolean {
    return this.client?.state === State.Running;
  }

  /** The running client, starting it when needed. Rejects with a message for the user. */
  ready(): Promise<LanguageClient> {
    if (this.client && this.client.state === State.Running) return Promise.resolve(this.client);
    if (!this.starting) {
      this.starting = this.start().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  private async start(): Promise<LanguageClient> {
    if (this.client) {
      const old = this.client;
      this.client = undefined;
      await old.dispose().catch(() => undefined);
    }
    const s = settings();
    const server: ServerOptions = {
      command: s.path,
      args: ['lsp'],
      options: { env: tetherEnv(s) },
    };
    const options: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file', pattern: '**/.tether/*.json' }],
      outputChannel: this.log,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: { sessionNotifications: true },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => {
          this.log.warn('the connection to the tether daemon closed; it reconnects on the next launch');
          this.connectedChanged.fire(false);
          return { action: CloseAction.DoNotRestart };
        },
      },
    };
    const client = new LanguageClient('tether', 'Tether', server, options);
    client.onNotification(Methods.sessionChanged, (s: SessionSnapshot) => this.sessionChanged.fire(s));
    client.onNotification('window/showMessage', (m: ShowMessageParams) => {
      if (this.handledElsewhere(m)) return;
      const show =
        m.type === MessageType.Error
          ? vscode.window.showErrorMessage
          : m.type === MessageType.Warning
            ? vscode.window.showWarningMessage
            : vscode.window.showInformationMessage;
      void show(m.message);
    });
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) this.connectedChanged.fire(true);
      if (e.oldState === State.Running && e.newState === State.Stopped) this.connectedChanged.fire(false);
    });
    this.client = client;
    this.log.info(`starting ${s.path} lsp${s.socket ? ` (TETHER_SOCKET=${s.socket})` : ''}`);
    try {
      await client.start();
    } catch (e) {
      this.client = undefined;
      await client.dispose().catch(() => undefined);
      const why = e instanceof Error ? e.message : String(e);
      throw new Error(`cannot reach the tether daemon through \`${s.path} lsp\`: ${why}`);
    }
    this.version = client.initializeResult?.serverInfo?.version;
    this.log.info(`connected to the tether daemon ${this.version ?? '(unknown version)'}`);
    return client;
  }

  async request<R>(method: string, params: unknown, token?: vscode.CancellationToken): Promise<R> {
    const client = await this.ready();
    // With a string method every further argument is a parameter: pass the token only when
    // there is one, or `params` would go out as `[params, null]`.
    // `null` params (the protocol's NoParams) are left out, or they would go out as `[null]`.
    const args: unknown[] = params === null || params === undefined ? [] : [params];
    if (token) args.push(token);
    return client.sendRequest<R>(method, ...(args as [unknown]));
  }

  /** Sends a notification when connected; never starts the daemon for it. */
  notify(method: string, params: unknown): void {
    if (!this.connected) return;
    void this.client!.sendNotification(method, params).catch((e) => this.log.warn(`${method}: ${e}`));
  }

  /** Drops the connection and makes a new one (after a settings change, or by command). */
  async restart(): Promise<void> {
    const old = this.client;
    this.client = undefined;
    this.connectedChanged.fire(false);
    await old?.dispose().catch(() => undefined);
    await this.ready();
  }

  dispose(): void {
    const c = this.client;
    this.client = undefined;
    void c?.dispose();
    this.sessionChanged.dispose();
    this.connectedChanged.dispose();
  }
}
