import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { SessionSnapshot } from '../../src/protocol';
import { formatAge, formatBytes, KEEP_ENDED, sessionNode, SessionStore, statusText } from '../../src/sessions';

function snap(id: string, over: Partial<SessionSnapshot> = {}): SessionSnapshot {
  return {
    id,
    target: 'pid:42',
    state: 'ready',
    processes: [],
    counters: { connectionsOpen: 0, connectionsTotal: 0, bytesIn: 0, bytesOut: 0, filesRead: 0, dnsLookups: 0 },
    lastErrors: [],
    diagnostics: [],
    created: 1000,
    ...over,
  };
}

test('the store keeps the newest snapshot and reports new diagnostics once', () => {
  const s = new SessionStore();
  let u = s.update(snap('a', { state: 'starting' }));
  assert.deepEqual(u, { isNew: true, stateChanged: false, newDiagnostics: [] });
  u = s.update(snap('a'));
  assert.equal(u.stateChanged, true);
  const noAttach = { id: 'no-attach', severity: 'error' as const, message: 'nothing joined' };
  u = s.update(snap('a', { diagnostics: [noAttach] }));
  assert.deepEqual(u.newDiagnostics, [noAttach]);
  u = s.update(snap('a', { diagnostics: [noAttach], counters: { ...snap('a').counters, filesRead: 3 } }));
  assert.deepEqual(u.newDiagnostics, []);
  assert.equal(s.get('a')!.counters.filesRead, 3);
  assert.equal(s.liveCount(), 1);
  s.update(snap('a', { state: 'ended' }));
  assert.equal(s.liveCount(), 0);
});

test('live sessions first, newest first; only the last ended ones are kept', () => {
  const s = new SessionStore();
  for (let i = 0; i < KEEP_ENDED + 5; i++) s.update(snap(`e${i}`, { state: 'ended', created: i }));
  s.update(snap('old-live', { created: 1 }));
  s.update(snap('new-live', { created: 500, state: 'starting' }));
  const ids = s.list().map((x) => x.id);
  assert.deepEqual(ids.slice(0, 2), ['new-live', 'old-live']);
  assert.equal(ids.length, 2 + KEEP_ENDED);
  assert.equal(ids[2], `e${KEEP_ENDED + 4}`);
  assert.ok(!ids.includes('e0'));
  s.replaceAll([snap('z')]);
  assert.deepEqual(s.list().map((x) => x.id), ['z']);
});

test('a session node shows target, state, processes, connections, bytes and errors', () => {
  const now = 1000_000 + 75_000;
  const n = sessionNode(
    snap('s1', {
      created: 1000,
      launchName: 'Launch app',
      agent: { version: '0.1.0', targetPid: 42, capabilities: [] },
      processes: [
        { pid: 7, executable: '/usr/bin/node', since: 1010, skipped: false },
        { pid: 8, executable: '/usr/bin/dlv', since: 1010, skipped: true },
      ],
      counters: { connectionsOpen: 1, connectionsTotal: 4, bytesIn: 2048, bytesOut: 10, filesRead: 2, dnsLookups: 1 },
      lastErrors: ['first', 'second'],
      diagnostics: [{ id: 'no-attach', severity: 'error', message: 'never joined' }],
    }),
    now,
  );
  assert.equal(n.label, 'Launch app');
  assert.equal(n.description, 'ready · pid:42 · 1 process');
  assert.equal(n.contextValue, 'tetherSession.live');
  const byLabel = Object.fromEntries(n.children!.map((c) => [c.label, c]));
  assert.equal(byLabel.target.description, 'pid:42 · agent 0.1.0 (pid 42)');
  assert.equal(byLabel.state.description, 'ready · 1m 15s');
  assert.equal(byLabel.processes.description, '1 attached, 1 skipped');
  assert.deepEqual(byLabel.processes.children!.map((c) => c.label), ['7 node', '8 dlv']);
  assert.equal(byLabel.connections.description, '1 open, 4 total');
  assert.equal(byLabel.bytes.description, 'in 2.0 KiB · out 10 B');
  assert.equal(byLabel['files read'].description, '2 · DNS lookups 1');
  assert.deepEqual(byLabel['last errors'].children!.map((c) => c.label), ['second', 'first']);
  assert.equal(byLabel.diagnostics.children![0].description, 'no-attach');
  const ended = sessionNode(snap('s2', { state: 'ended', endReason: 'the editor\'s debug session ended' }), now);
  assert.equal(ended.contextValue, 'tetherSession.ended');
  assert.equal(ended.label, 'pid:42');
  assert.equal(ended.children![1].description, 'ended: the editor\'s debug session ended');
});

test('formats and the status bar text', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(300 * 1024 * 1024), '300 MiB');
  assert.equal(formatAge(100, 100_000 + 5_000), '5s');
  assert.equal(formatAge(0, 7_380_000), '2h 3m');
  assert.equal(formatAge(200, 100_000), '0s');
  assert.equal(statusText(true, 0, true), '$(plug) Tether: on');
  assert.equal(statusText(true, 2, true), '$(plug) Tether: on · 2 sessions');
  assert.equal(statusText(false, 1, true), '$(circle-slash) Tether: off · 1 session');
  assert.equal(statusText(true, 1, false), '$(debug-disconnect) Tether: no daemon');
});
