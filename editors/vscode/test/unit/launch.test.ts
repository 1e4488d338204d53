import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decide, describe, envSummary, fixLabel, forDaemon, markOf, MARK, patched, perLaunch, sortDiagnostics, stopped } from '../../src/launch';
import type { Diagnostic, PrepareLaunchResult } from '../../src/protocol';

const node = { type: 'node', request: 'launch', name: 'app', program: '/w/app.js' };

test('the toggle decides unless the configuration has its own tether field', () => {
  assert.deepEqual(decide(node, false), { kind: 'skip', reason: 'disabled' });
  assert.deepEqual(decide(node, true), { kind: 'prepare', target: undefined, configPath: undefined });
  assert.equal(decide({ ...node, tether: false }, true).kind, 'skip');
  assert.equal(decide({ ...node, tether: true }, false).kind, 'prepare');
  assert.deepEqual(decide({ ...node, tether: { target: 'pid:7', config: 'cfg/t.json' } }, false), {
    kind: 'prepare',
    target: 'pid:7',
    configPath: 'cfg/t.json',
  });
  assert.equal(decide({ ...node, tether: { enabled: false, target: 'pid:7' } }, true).kind, 'skip');
});

test('attach gets its own answer; explicit when the configuration asked for tether', () => {
  assert.deepEqual(decide({ ...node, request: 'attach' }, true), { kind: 'attach', explicit: false });
  assert.deepEqual(decide({ ...node, request: 'attach', tether: true }, false), { kind: 'attach', explicit: true });
  assert.deepEqual(decide({ ...node, request: 'attach' }, false), { kind: 'skip', reason: 'disabled' });
});

test('never patches twice: marked configurations and js-debug child sessions pass through', () => {
  assert.deepEqual(decide({ ...node, [MARK]: { sessionId: 's1' } }, true), { kind: 'skip', reason: 'already-patched' });
  assert.deepEqual(decide({ type: 'pwa-node', request: 'attach', __pendingTargetId: 'x' }, true), { kind: 'skip', reason: 'child-session' });
  assert.deepEqual(decide({ request: 'launch' }, true), { kind: 'skip', reason: 'no-type' });
});

test('the patched configuration is the daemon\'s launch, marked, keeping the tether field', () => {
  const result: PrepareLaunchResult = {
    sessionId: 's-42',
    launch: { ...node, env: { POD: '1', LD_PRELOAD: '/l.so' } },
    env: { POD: '1', LD_PRELOAD: '/l.so', TETHER_SESSION: 's-42' },
    envUnset: ['X'],
    diagnostics: [],
  };
  const original = { ...node, tether: true };
  const p = patched(result, original, 'pid:9');
  assert.deepEqual(p.env, { POD: '1', LD_PRELOAD: '/l.so' });
  assert.equal(p.tether, true);
  assert.deepEqual(markOf(p), { sessionId: 's-42', target: 'pid:9' });
  assert.equal(decide(p, true).kind, 'skip');
  assert.equal(markOf(original), undefined);
  assert.equal(markOf({ [MARK]: 'nope' }), undefined);
  assert.deepEqual(forDaemon(original), node);
  assert.match(envSummary(result), /^LD_PRELOAD, TETHER_SESSION \+ 1 variable\(s\) of the target, 1 removed$/);
});

test('the launch stops without a session or with an error', () => {
  const base: PrepareLaunchResult = { sessionId: 's', launch: {}, env: {}, envUnset: [], diagnostics: [] };
  assert.equal(stopped(base), false);
  assert.equal(stopped({ ...base, sessionId: null }), true);
  assert.equal(stopped({ ...base, diagnostics: [{ id: 'x', severity: 'error', message: 'm' }] }), true);
  assert.equal(stopped({ ...base, diagnostics: [{ id: 'x', severity: 'warning', message: 'm' }] }), false);
});

test('diagnostics: order, one-line form, fix buttons', () => {
  const ds: Diagnostic[] = [
    { id: 'layer-location', severity: 'info', message: 'the layer is loaded from /l' },
    { id: 'port-not-served', severity: 'warning', message: 'port 3000', fix: { applied: false, description: 'map it', edit: { 'feature.network.incoming.port_mapping': [[3000, 8080]] } } },
    { id: 'static-binary', severity: 'error', message: 'static', fix: { applied: false, description: 'use tether exec' } },
    { id: 'go-linkmode', severity: 'info', message: 'linkmode', fix: { applied: true, description: 'a -> b', edit: { 'launch.buildFlags': 'x' } } },
    { id: 'cgo', severity: 'error', message: 'cgo', fix: { applied: false, description: 'x', edit: { 'launch.env': { CGO_ENABLED: '1' } } } },
  ];
  assert.deepEqual(sortDiagnostics(ds).map((d) => d.severity), ['error', 'error', 'warning', 'info', 'info']);
  assert.equal(fixLabel(ds[1]), 'Apply port_mapping');
  assert.equal(fixLabel(ds[2]), undefined, 'no edit');
  assert.equal(fixLabel(ds[3]), undefined, 'already applied');
  assert.equal(fixLabel(ds[4]), 'Apply launch.env');
  assert.equal(describe(ds[3]), '[info] linkmode (go-linkmode)\n    fixed: a -> b');
  assert.equal(describe(ds[2]), '[error] static (static-binary)\n    fix: use tether exec');
  assert.deepEqual(perLaunch({ tether: 'yes' }), {});
});
