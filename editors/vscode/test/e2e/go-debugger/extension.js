// Test only: the `go` debug type, served by Delve's `dlv dap` (from `go install`, building with
// the installed Go). The configuration VS Code hands to the adapter (after every resolver, so
// after tether's patch) is written to `e2eRecord`, so the test can check what tether changed.
const vscode = require('vscode');
const cp = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

exports.activate = (context) => {
  const log = vscode.window.createOutputChannel('Go (dlv, test)');
  const running = new Map();
  context.subscriptions.push(
    log,
    vscode.debug.registerDebugAdapterDescriptorFactory('go', {
      async createDebugAdapterDescriptor(session) {
        const config = session.configuration;
        if (config.e2eRecord) {
          fs.mkdirSync(path.dirname(config.e2eRecord), { recursive: true });
          fs.writeFileSync(config.e2eRecord, JSON.stringify(config, null, 2));
        }
        const port = await freePort();
        // `go` and `dlv` come from PATH (scripts/e2e.sh puts Go's install directory on it).
        const env = { ...process.env };
        // As the Go extension does: dlv runs in the package's directory, so that `go build`
        // finds its go.mod.
        let cwd = session.workspaceFolder?.uri.fsPath;
        if (typeof config.program === 'string' && fs.existsSync(config.program)) {
          cwd = fs.statSync(config.program).isDirectory() ? config.program : path.dirname(config.program);
        }
        const dlv = cp.spawn('dlv', ['dap', `--listen=127.0.0.1:${port}`], {
          env,
          cwd,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        running.set(session.id, dlv);
        dlv.stderr.on('data', (d) => log.append(d.toString()));
        await new Promise((resolve, reject) => {
          let seen = '';
          const timer = setTimeout(() => reject(new Error(`dlv dap did not start: ${seen}`)), 30000);
          dlv.stdout.on('data', (d) => {
            log.append(d.toString());
            seen += d.toString();
            if (/listening at/i.test(seen)) {
              clearTimeout(timer);
              resolve();
            }
          });
          dlv.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`dlv dap exited (${code}): ${seen}`));
          });
        });
        log.appendLine(`dlv dap for "${config.name}" on port ${port}`);
        return new vscode.DebugAdapterServer(port, '127.0.0.1');
      },
    }),
    vscode.debug.onDidTerminateDebugSession((s) => {
      const dlv = running.get(s.id);
      running.delete(s.id);
      if (dlv && dlv.exitCode === null) setTimeout(() => dlv.kill(), 2000);
    }),
  );
};

exports.deactivate = () => {};
