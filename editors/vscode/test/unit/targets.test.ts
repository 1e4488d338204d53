import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { Target } from '../../src/protocol';
import { pickItems, stillListed } from '../../src/targets';

const targets: Target[] = [
  { path: 'pid:10', kind: 'process', executable: '/bin/busybox', cmdline: ['sleep', '100000'], containers: [], pid: 10 },
  { path: 'pid:11', kind: 'process', executable: '/usr/bin/node', cmdline: [], containers: [], pid: 11 },
  { path: 'pod/web', kind: 'pod', executable: '', cmdline: [], containers: ['app', 'sidecar'], namespace: 'shop' },
  { path: 'pod/db', kind: 'pod', executable: '', cmdline: ['postgres'], containers: ['db'], namespace: 'shop' },
];

test('targets are grouped, with a row per container of a multi-container pod', () => {
  const items = pickItems(targets, 'pid:11');
  assert.deepEqual(
    items.map((i) => (i.separator ? `-- ${i.label}` : `${i.path} | ${i.description} | ${i.detail}`)),
    [
      '-- local processes',
      'pid:10 | busybox | sleep 100000',
      'pid:11 | node (current) | /usr/bin/node',
      '-- shop · pod',
      'pod/web/container/app | app | ',
      'pod/web/container/sidecar | sidecar | ',
      'pod/db | db | postgres',
    ],
  );
});

test('a remembered target is still listed, also as one container of a pod', () => {
  assert.equal(stillListed(targets, 'pid:10'), true);
  assert.equal(stillListed(targets, 'pid:99'), false);
  assert.equal(stillListed(targets, 'pod/web/container/app'), true);
});
