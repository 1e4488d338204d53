// The "Tether" view in the Run and Debug container: the daemon's sessions as a tree.

import * as vscode from 'vscode';

import { sessionNode, type Node, type SessionStore } from './sessions';

export class SessionsView implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  readonly view: vscode.TreeView<Node>;
  private roots: Node[] = [];
  private readonly parents = new Map<string, Node>();
  /** Ages in the tree move on while a session is live. */
  private readonly ticker: ReturnType<typeof setInterval>;

  constructor(private readonly store: SessionStore) {
    this.view = vscode.window.createTreeView('tether.sessions', { treeDataProvider: this, showCollapseAll: true });
    this.ticker = setInterval(() => {
      if (this.view.visible && this.store.liveCount() > 0) this.refresh();
    }, 5000);
  }

  refresh(): void {
    const now = Date.now();
    this.roots = this.store.list().map((s) => sessionNode(s, now));
    this.parents.clear();
    const walk = (n: Node) => {
      for (const c of n.children ?? []) {
        this.parents.set(c.id, n);
        walk(c);
      }
    };
    this.roots.forEach(walk);
    this.view.badge = this.store.liveCount()
      ? { value: this.store.liveCount(), tooltip: `${this.store.liveCount()} live tether session(s)` }
      : undefined;
    this.changed.fire(undefined);
  }

  getChildren(node?: Node): Node[] {
    return node ? node.children ?? [] : this.roots;
  }

  getParent(node: Node): Node | undefined {
    return this.parents.get(node.id);
  }

  getTreeItem(n: Node): vscode.TreeItem {
    const state = n.children?.length
      ? n.expanded
        ? vscode.TreeItemCollapsibleState.Expanded
        : vscode.TreeItemCollapsibleState.Collapsed
      : vscode.TreeItemCollapsibleState.None;
    const item = new vscode.TreeItem(n.label, state);
    item.id = n.id;
    item.description = n.description;
    item.tooltip = n.tooltip;
    item.contextValue = n.contextValue;
    if (n.icon) item.iconPath = new vscode.ThemeIcon(n.icon, n.color ? new vscode.ThemeColor(n.color) : undefined);
    return item;
  }

  /** Shows the view and selects a session. */
  async reveal(sessionId?: string): Promise<void> {
    await vscode.commands.executeCommand('tether.sessions.focus');
    const node = sessionId ? this.roots.find((r) => r.sessionId === sessionId) : undefined;
    if (node) await this.view.reveal(node, { select: true, focus: false, expand: true });
  }

  dispose(): void {
    clearInterval(this.ticker);
    this.view.dispose();
    this.changed.dispose();
  }
}
