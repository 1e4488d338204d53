// End-to-end test of the extension in a real VS Code: code-server in headless Chromium, driven
// by Playwright, against a local pod (testkit/examples/pod.rs) and the real tether daemon.
//
// It checks, as a person would see it:
//   1. the status bar says tether is on, and the target picker lists the pod's process;
//   2. config files get the daemon's diagnostics (and the JSON schema's) through the extension;
//   3. F5 on a node launch configuration runs the program as if inside the pod: it sees the pod's
//      variable, reads a file only the pod has and calls a service only the pod's network has;
//      the Tether view shows the session live; Restart reuses it (no second patch); it ends
//      once the debug session stops;
//   4. a launch whose programs never join (they are in the skip list) is reported: a
//      notification with the cause, and the diagnostic in the view;
//   5. a `go` launch through Delve's `dlv dap` gets buildFlags patched by the daemon
//      (`-linkmode external`), and its debuggee is intercepted the same way.
// Screenshots and logs go to $RESULTS (default editors/vscode/test-results/e2e).
//
// Environment (scripts/e2e.sh sets it): E2E_TOOLS (code-server + playwright-core install),
// E2E_CACHE, TETHER_BIN_DIR (tether, tether-agent, libtether_layer.so), POD_BIN (the pod example),
// VSIX, GO_VSIX.

import { execFileSync, spawn } from 'child_process';
import fs from 'fs';
import net from 'net';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const extRoot = path.resolve(here, '..', '..');
const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/e2e.sh)`);
  return v;
};
const TOOLS = need('E2E_TOOLS');
const CACHE = need('E2E_CACHE');
const BIN_DIR = need('TETHER_BIN_DIR');
const POD_BIN = need('POD_BIN');
const VSIX = need('VSIX');
const GO_VSIX = need('GO_VSIX');
const RESULTS = path.resolve(process.env.RESULTS ?? path.join(extRoot, 'test-results', 'e2e'));
const RUN = path.join(CACHE, 'run');
const CODE_SERVER = path.join(TOOLS, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const { chromium } = createRequire(path.join(TOOLS, 'package.json'))('playwright-core');

const t0 = Date.now();
const timings = [];
const cleanups = [];
let failures = 0;
let passes = 0;

function log(msg) {
  console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);
}

async function step(name, fn) {
  const start = Date.now();
  log(`▶ ${name}`);
  try {
    const r = await fn();
    const s = (Date.now() - start) / 1000;
    timings.push([name, s]);
    log(`✔ ${name} (${s.toFixed(1)}s)`);
    return r;
  } catch (e) {
    timings.push([name, (Date.now() - start) / 1000, 'FAILED']);
    log(`✘ ${name}: ${e instanceof Error ? e.stack ?? e.message : e}`);
    throw e;
  }
}

/** A check: counted, and the run goes on to collect everything it can. */
async function check(name, fn) {
  try {
    await fn();
    passes++;
    log(`  ok   ${name}`);
  } catch (e) {
    failures++;
    log(`  FAIL ${name}: ${e instanceof Error ? e.message : e}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

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

async function waitFor(what, fn, timeoutMs, everyMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e?.fatal) throw e;
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? `: ${last.message ?? last}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const readJson = (p) => (fs.existsSync(p) ? JSON.parse(fs.readFileSync(p, 'utf8')) : undefined);

/** What a launched program wrote; fails at once when its tether session ends before that. */
function programOutput(file, launchName, timeoutMs) {
  return waitFor(
    path.relative(WS, file),
    () => {
      const out = readJson(file);
      if (out) return out;
      const mine = JSON.parse(tether('status', '--json')).sessions.find((x) => x.launchName === launchName);
      if (mine && (mine.state === 'ended' || mine.state === 'failed')) {
        const joined = mine.processes.map((p) => `${p.pid} ${p.executable}${p.skipped ? ' (skipped)' : ''}`).join(', ');
        const e = new Error(`the tether session of "${launchName}" ${mine.state} before the program wrote its output: ${mine.endReason}; its processes: ${joined}`);
        e.fatal = true;
        throw e;
      }
      return undefined;
    },
    timeoutMs,
    500,
  );
}

// ── the environment code-server (and so the extension host, `tether lsp`, the daemon and the
//    debugged programs) runs with. Every directory code-server, VS Code, tether and Go write to
//    is the run's or the cache's; HOME stays the user's, as in real use: tether keeps the home
//    local, and code-server (with js-debug's bootloader, which every node launch loads) and the
//    workspace are under it (the cache's default place). A cache elsewhere must be a local
//    path for tether too (under /tmp, say).
const env = {
  ...process.env,
  XDG_CONFIG_HOME: path.join(RUN, 'config'),
  XDG_DATA_HOME: path.join(RUN, 'data'),
  XDG_STATE_HOME: path.join(RUN, 'state'),
  XDG_CACHE_HOME: path.join(CACHE, 'xdg-cache'),
  XDG_RUNTIME_DIR: path.join(RUN, 'runtime'),
  TMPDIR: path.join(RUN, 'tmp'),
  GOCACHE: path.join(CACHE, 'go-build'),
  GOPATH: path.join(CACHE, 'go'),
  GOFLAGS: '-mod=mod',
  GOTOOLCHAIN: 'local',
  GOPROXY: 'off',
  TETHER_LOG: 'info',
  // The daemon reports a launch that never attached after this long (default 10 s).
  TETHER_ATTACH_DEADLINE_MS: '4000',
};
delete env.GOROOT;
const SOCKET = path.join(RUN, 'runtime', 'tether-e2e.sock');
const WS = path.join(RUN, 'ws');
const tether = (...args) =>
  execFileSync(path.join(RUN, 'bin', 'tether'), args, { env: { ...env, TETHER_SOCKET: SOCKET }, encoding: 'utf8', timeout: 30000 });

async function main() {
  fs.rmSync(RUN, { recursive: true, force: true });
  fs.rmSync(RESULTS, { recursive: true, force: true });
  for (const d of ['config', 'data', 'state', 'runtime', 'tmp', 'bin', 'user-data/User', 'extensions']) {
    fs.mkdirSync(path.join(RUN, d), { recursive: true, mode: 0o700 });
  }
  fs.mkdirSync(RESULTS, { recursive: true });

  // Binaries are copied, so that a rebuild during the run cannot change them.
  for (const f of ['tether', 'tether-agent', 'libtether_layer.so']) {
    fs.copyFileSync(path.join(BIN_DIR, f), path.join(RUN, 'bin', f));
    fs.chmodSync(path.join(RUN, 'bin', f), 0o755);
  }

  const pod = await step('start the local pod', () => startPod());
  // Cleanups run last-in first-out: the daemon the extension started (on the test's own
  // socket) stops after code-server and before the pod.
  cleanups.push(() => log(tether('daemon', 'stop').trim()));

  await step('write the workspace', () => {
    fs.cpSync(path.join(here, 'workspace'), WS, { recursive: true });
    fs.mkdirSync(path.join(WS, '.tether'), { recursive: true });
    fs.writeFileSync(path.join(WS, '.tether', 'tether.json'), JSON.stringify({ target: `pid:${pod.pid}` }, null, 2) + '\n');
    // The config of the "never attached" launch: its programs are in the skip list.
    fs.writeFileSync(
      path.join(WS, '.tether', 'skip-node.json'),
      JSON.stringify({ target: `pid:${pod.pid}`, skip_processes: ['node', 'sh', 'dash'] }, null, 2) + '\n',
    );
    // A second config file with a misspelt key: the daemon must flag it.
    fs.writeFileSync(path.join(WS, '.tether', 'broken.json'), '{\n  "targt": "pid:1"\n}\n');
    fs.writeFileSync(
      path.join(WS, '.vscode', 'settings.json'),
      JSON.stringify({ 'tether.enabled': true, 'tether.path': path.join(RUN, 'bin', 'tether'), 'tether.socket': SOCKET }, null, 2),
    );
    fs.writeFileSync(
      path.join(RUN, 'user-data', 'User', 'settings.json'),
      JSON.stringify(
        {
          'workbench.startupEditor': 'none',
          'workbench.tips.enabled': false,
          'workbench.enableExperiments': false,
          'security.workspace.trust.enabled': false,
          'telemetry.telemetryLevel': 'off',
          'update.mode': 'none',
          'extensions.autoCheckUpdates': false,
          'extensions.autoUpdate': false,
          'extensions.ignoreRecommendations': true,
          'git.enabled': false,
          'npm.autoDetect': 'off',
          'debug.internalConsoleOptions': 'openOnSessionStart',
          'debug.openDebug': 'openOnDebugBreak',
          'window.restoreWindows': 'none',
          'files.hotExit': 'off',
        },
        null,
        2,
      ),
    );
  });

  await step('prewarm the Go build cache (what dlv builds: -N -l, external link)', () => {
    execFileSync(
      'go',
      ['build', '-gcflags=all=-N -l', '-ldflags=-linkmode external', '-tags=e2e', '-o', path.join(RUN, 'tmp', 'goapp-prewarm'), '.'],
      { cwd: path.join(WS, 'goapp'), env, stdio: 'inherit', timeout: 300000 },
    );
  });

  const port = await freePort();
  await step('install the extensions into code-server', () => {
    for (const vsix of [VSIX, GO_VSIX]) {
      execFileSync(
        process.execPath,
        [CODE_SERVER, '--user-data-dir', path.join(RUN, 'user-data'), '--extensions-dir', path.join(RUN, 'extensions'), '--install-extension', vsix],
        { env, stdio: 'inherit', timeout: 120000 },
      );
    }
  });

  await step('start code-server', () => startCodeServer(port));

  const browser = await step('start Chromium', () =>
    chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      env: { ...process.env, TMPDIR: path.join(RUN, 'tmp') },
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    }),
  );
  cleanups.push(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  const shot = async (name) => {
    const file = path.join(RESULTS, `${name}.png`);
    await page.screenshot({ path: file });
    log(`screenshot ${file}`);
  };
  // Runs first at the end (cleanups run last-in first-out): what the page showed, and the
  // Debug Console's text.
  cleanups.push(async () => {
    await shot('last').catch(() => undefined);
    const repl = await page.locator('.repl .monaco-list-row').allTextContents().catch(() => []);
    fs.writeFileSync(path.join(RESULTS, 'debug-console.txt'), repl.join('\n'));
  });

  await step('open the workspace', async () => {
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(WS)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60000 });
  });

  const statusBar = page.locator('#workbench\\.parts\\.statusbar');
  await step('the status bar says tether is on', async () => {
    await statusBar.getByText(/Tether: on/).waitFor({ timeout: 60000 });
  });

  await step('config files: the daemon\'s diagnostics and the schema\'s', async () => {
    await quickOpen(page, 'broken.json');
    await page.keyboard.press('Control+Shift+M');
    const problems = page.locator('.markers-panel');
    await check('the daemon flags the unknown key with a suggestion', () =>
      problems.getByText(/targt: unknown key; did you mean `target`\?/).first().waitFor({ timeout: 30000 }),
    );
    await check('the JSON schema (jsonValidation) flags it too', () =>
      problems.getByText(/Property targt is not allowed/).first().waitFor({ timeout: 30000 }),
    );
    await shot('config-diagnostics');
    await page.keyboard.press('Control+Shift+M');
  });

  await step('the target picker lists the pod (the config file\'s target wins)', async () => {
    await palette(page, 'Tether: Pick Target');
    const qp = page.locator('.quick-input-widget');
    await check('targets are listed', async () => {
      await qp.locator('.monaco-list-row').nth(2).waitFor({ timeout: 30000 });
    });
    await qp.locator('input[role="combobox"]').fill(`pid:${pod.pid}`);
    await check('the pod\'s process is listed', () =>
      qp.locator(`.monaco-list-row[aria-label*="pid:${pod.pid}"]`).first().waitFor({ timeout: 30000 }),
    );
    await check('the picker says the config file sets the target', async () => {
      const placeholder = await qp.locator('input[role="combobox"]').getAttribute('placeholder');
      assert(placeholder !== null, 'no placeholder');
      assert(placeholder?.includes(`sets the target pid:${pod.pid}`), `placeholder: ${placeholder}`);
    });
    await shot('target-picker');
    await page.keyboard.press('Escape');
  });

  const nodeOut = path.join(WS, 'out', 'node.json');
  await step('F5 on the node launch configuration runs the program inside the pod', async () => {
    await quickOpen(page, 'app.js');
    await page.locator('.monaco-editor .view-lines').first().click();
    await page.keyboard.press('F5');
    const r = await programOutput(nodeOut, 'Node: app', 90000);
    log(`node program wrote ${JSON.stringify(r)}`);
    await check('node: the pod\'s environment variable', () =>
      assert(r.greeting === 'hello from inside the e2e pod', `greeting: ${r.greeting}`),
    );
    await check('node: a file only the pod has', () =>
      assert(r.file === 'this file exists only in the pod', `file: ${r.file ?? r.fileError}`),
    );
    await check('node: a service only the pod\'s network reaches', () =>
      assert(/^hello from pod e2e;/.test(r.http ?? ''), `http: ${r.http ?? r.httpError}`),
    );
    await check('node: the pod\'s HTTP service counted the request', async () => {
      const s = await pod.stats();
      assert(s.http >= 1, `pod stats ${JSON.stringify(s)}`);
    });
  });

  const panel = () => page.locator('.pane', { has: page.locator('.pane-header', { hasText: /^Tether/ }) });
  const sessionRow = (name) => panel().locator('.monaco-list-row', { hasText: name }).first();
  await step('the Tether view shows the node session live', async () => {
    await showTetherView(page);
    await check('the session row: ready, the target, its processes', () =>
      waitFor(
        'the Node session row',
        async () => /ready · pid:\d+ · [1-9]\d* process/.test((await sessionRow('Node: app').textContent({ timeout: 1000 })) ?? ''),
        30000,
      ),
    );
    await check('its details: processes, connections, bytes, files', async () => {
      const text = (await panel().locator('.monaco-list-row').allTextContents()).join('\n');
      for (const part of ['target', 'processes', 'attached', 'connections', 'bytes', 'files read']) {
        assert(text.includes(part), `"${part}" not in the view: ${text}`);
      }
    });
    await check('the status bar counts the live session', () => statusBar.getByText(/Tether: on · 1 session/).waitFor({ timeout: 10000 }));
    await shot('node-session');
  });

  await step('Restart keeps the session: the configuration is not patched twice', async () => {
    const before = readJson(nodeOut);
    fs.rmSync(nodeOut);
    await palette(page, 'Debug: Restart');
    const r = await programOutput(nodeOut, 'Node: app', 60000);
    await check('the restarted program is a new process that still runs in the pod', () =>
      assert(r.pid !== before.pid && r.greeting === 'hello from inside the e2e pod' && /^hello from pod e2e;/.test(r.http ?? ''), JSON.stringify(r)),
    );
    await check('one tether session for the launch, still live', () => {
      const mine = JSON.parse(tether('status', '--json')).sessions.filter((x) => x.launchName === 'Node: app');
      assert(mine.length === 1 && mine[0].state === 'ready', `tether status: ${JSON.stringify(mine.map((m) => [m.id, m.state, m.endReason]))}`);
      assert(mine[0].processes.some((p) => p.pid === r.pid), `pid ${r.pid} not among ${JSON.stringify(mine[0].processes)}`);
    });
  });

  await step('stopping the debug session ends the tether session', async () => {
    await palette(page, 'Debug: Stop');
    await check('the session row says ended', () =>
      waitFor('the Node session to end', async () => /^.*ended/.test((await sessionRow('Node: app').textContent({ timeout: 1000 })) ?? ''), 30000),
    );
    await check('the daemon agrees', () => {
      const s = JSON.parse(tether('status', '--json'));
      const mine = s.sessions.find((x) => x.launchName === 'Node: app');
      assert(mine && mine.state === 'ended', `tether status: ${JSON.stringify(mine)}`);
    });
  });

  await step('a launch that never attaches is reported, in the view and as a notification', async () => {
    await startConfig(page, 'Node: never attaches');
    const toast = page.locator('.notification-toast', { hasText: 'never' }).first();
    await check('a notification names the cause', () => toast.waitFor({ timeout: 30000 }));
    await check('the notification offers the Tether panel', () =>
      toast.locator('.monaco-button', { hasText: 'Show Tether Panel' }).first().waitFor({ timeout: 1000 }),
    );
    log(`notification: ${(await toast.textContent().catch(() => ''))?.slice(0, 300)}`);
    await showTetherView(page);
    await check('the session shows the no-attach diagnostic', () =>
      panel().locator('.monaco-list-row', { hasText: 'no-attach' }).first().waitFor({ timeout: 15000 }),
    );
    await shot('no-attach');
    await palette(page, 'Debug: Stop');
    await page.keyboard.press('Escape');
  });

  const goOut = path.join(WS, 'out', 'go.json');
  await step('a go launch through dlv dap: buildFlags patched, the debuggee intercepted', async () => {
    await startConfig(page, 'Go: goapp');
    // dlv builds first (a prewarmed cache: seconds), then starts the debuggee.
    const r = await programOutput(goOut, 'Go: goapp', 120000);
    log(`go program wrote ${JSON.stringify(r)}`);
    const config = readJson(path.join(WS, 'out', 'go-config.json'));
    await check('go: the daemon merged -linkmode external into buildFlags', () =>
      assert(
        typeof config?.buildFlags === 'string' && config.buildFlags.includes('-tags=e2e') && config.buildFlags.includes('-linkmode external'),
        `buildFlags: ${JSON.stringify(config?.buildFlags)}`,
      ),
    );
    await check('go: the launch env carries the layer and the session', () =>
      assert(/libtether_layer\.so/.test(config?.env?.LD_PRELOAD ?? '') && config?.env?.TETHER_SESSION, `env: ${JSON.stringify(config?.env)}`),
    );
    await check('go: the pod\'s environment variable', () => assert(r.greeting === 'hello from inside the e2e pod', `greeting: ${r.greeting}`));
    await check('go: a file only the pod has (read through the layer)', () =>
      assert(r.file === 'this file exists only in the pod', `file: ${r.file ?? r.fileError}`),
    );
    await check('go: a service only the pod\'s network reaches', () => assert(/^hello from pod e2e;/.test(r.http ?? ''), `http: ${r.http ?? r.httpError}`));
    await check('go: the debuggee joined the session (tether status)', () => {
      const s = JSON.parse(tether('status', '--json'));
      const mine = s.sessions.find((x) => x.launchName === 'Go: goapp');
      assert(mine?.processes?.some((p) => p.pid === r.pid && !p.skipped), `tether status: ${JSON.stringify(mine)}`);
    });
  });

  await step('the Tether view shows the go session', async () => {
    await showTetherView(page);
    await check('the go session row', () =>
      waitFor('the Go session row', async () => /ready · pid:\d+/.test((await sessionRow('Go: goapp').textContent({ timeout: 1000 })) ?? ''), 30000),
    );
    await shot('go-session');
    await palette(page, 'Debug: Stop');
    await check('the go session ends', () =>
      waitFor('the Go session to end', async () => /ended/.test((await sessionRow('Go: goapp').textContent({ timeout: 1000 })) ?? ''), 30000),
    );
    await shot('final');
  });
}

/** The Tether view, roomy: the other Run and Debug views collapsed, the side bar wider. */
async function showTetherView(page) {
  await palette(page, 'Tether: Show Sessions');
  const sidebar = page.locator('#workbench\\.parts\\.sidebar');
  await sidebar.locator('.pane-header', { hasText: /^Tether/ }).waitFor({ timeout: 10000 });
  for (let i = 0; i < 8; i++) {
    const header = sidebar.locator('.pane-header[aria-expanded="true"]').filter({ hasNotText: /^\s*(Tether|Call Stack)/i }).first();
    if ((await header.count()) === 0) break;
    await header.click();
    await page.waitForTimeout(150);
  }
  const box = await sidebar.boundingBox();
  for (let i = 0; box && box.width < 480 && i < 4; i++) {
    await palette(page, 'Increase Current View Size', { prefix: true });
  }
}

/** Starts a launch configuration by name (Debug: Select and Start Debugging). */
async function startConfig(page, name) {
  await palette(page, 'Debug: Select and Start Debugging');
  const row = page.locator('.quick-input-widget .monaco-list-row', { hasText: name }).first();
  await row.waitFor({ timeout: 15000 });
  await row.click();
}

async function quickOpen(page, name) {
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input[role="combobox"]');
  await input.waitFor({ timeout: 10000 });
  await input.fill(name);
  const row = page.locator('.quick-input-widget .monaco-list-row', { hasText: name }).first();
  await row.waitFor({ timeout: 15000 });
  await row.click();
  await page.locator(`.tab[aria-label^="${name}"]`).first().waitFor({ timeout: 15000 });
}

async function palette(page, command, { prefix = false } = {}) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input[role="combobox"]');
  await input.waitFor({ timeout: 10000 });
  await input.fill(`>${command}`);
  const row = page
    .locator(
      prefix
        ? `.quick-input-widget .monaco-list-row[aria-label^="${command}"]`
        : `.quick-input-widget .monaco-list-row[aria-label^="${command},"], .quick-input-widget .monaco-list-row[aria-label="${command}"]`,
    )
    .first();
  await row.waitFor({ timeout: 15000 });
  await row.click();
}

function startPod() {
  return new Promise((resolve, reject) => {
    const child = spawn(POD_BIN, ['e2e'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buf = '';
    const waiting = [];
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const ready = /^ready pid=(\d+)/.exec(line);
        if (ready) {
          log(`pod: ${line}`);
          const pod = {
            pid: Number(ready[1]),
            stats: () =>
              new Promise((res) => {
                waiting.push(res);
                child.stdin.write('stats\n');
              }),
          };
          cleanups.push(
            () =>
              new Promise((res) => {
                child.on('exit', res);
                child.stdin.end();
                setTimeout(() => child.kill('SIGTERM'), 15000);
              }),
          );
          resolve(pod);
        }
        const stats = /^stats http=(\d+) dns=(\d+)/.exec(line);
        if (stats) waiting.shift()?.({ http: Number(stats[1]), dns: Number(stats[2]) });
      }
    });
    child.on('exit', (code) => reject(new Error(`the pod exited (${code}) before it was ready`)));
  });
}

async function startCodeServer(port) {
  fs.writeFileSync(path.join(RUN, 'config', 'code-server.yaml'), `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const out = fs.openSync(path.join(RESULTS, 'code-server.log'), 'w');
  const child = spawn(
    process.execPath,
    [
      CODE_SERVER,
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--auth',
      'none',
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--ignore-last-opened',
      '--user-data-dir',
      path.join(RUN, 'user-data'),
      '--extensions-dir',
      path.join(RUN, 'extensions'),
      '--config',
      path.join(RUN, 'config', 'code-server.yaml'),
    ],
    { env, detached: true, stdio: ['ignore', out, out] },
  );
  // code-server leaves children (file watchers) behind on a plain SIGTERM: end its whole group.
  cleanups.push(async () => {
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {}
    await new Promise((r) => setTimeout(r, 1500));
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
  });
  await waitFor(
    'code-server /healthz',
    () =>
      fetch(`http://127.0.0.1:${port}/healthz`)
        .then((r) => r.ok)
        .catch(() => false),
    30000,
  );
}

async function cleanup() {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (e) {
      log(`cleanup: ${e.message}`);
    }
  }
  // Anything still running from this run's binaries (an agent that outlived its daemon) is ours.
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const exe = fs.readlinkSync(`/proc/${pid}/exe`);
      if (exe.startsWith(path.join(RUN, 'bin') + '/')) {
        log(`killing leftover ${exe} (pid ${pid})`);
        process.kill(Number(pid), 'SIGKILL');
      }
    } catch {}
  }
  for (const [from, to] of [
    [path.join(RUN, 'state', 'tether'), 'daemon-logs'],
    [path.join(RUN, 'user-data', 'logs'), 'vscode-logs'],
    [path.join(WS, 'out'), 'program-output'],
  ]) {
    try {
      fs.cpSync(from, path.join(RESULTS, to), { recursive: true });
    } catch {}
  }
}

let fatal;
const hardStop = setTimeout(() => {
  log('the end-to-end test took longer than 15 minutes: stopping');
  process.exitCode = 1;
  cleanup().finally(() => process.exit(1));
}, 15 * 60 * 1000);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: cleaning up`);
    cleanup().finally(() => process.exit(1));
  });
}
try {
  await main();
} catch (e) {
  fatal = e;
}
await cleanup();
clearTimeout(hardStop);
console.log('\n── timings ──');
for (const [name, s, failed] of timings) console.log(`${s.toFixed(1).padStart(7)}s  ${name}${failed ? '  (FAILED)' : ''}`);
console.log(`results: ${RESULTS}`);
if (fatal) failures++;
console.log(`e2e: ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
