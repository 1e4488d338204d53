import assert from 'node:assert/strict';
import { test } from 'node:test';

import { applyChanges, configTarget, describeEdit, launchIndex, planEdit } from '../../src/fixes';

test('an edit is split by the file it changes', () => {
  const plan = planEdit({
    'feature.network.incoming.port_mapping': [[3000, 8080]],
    'feature.env.override': { NODE_ENV: 'development' },
    'launch.env': { CGO_ENABLED: '1' },
    'turbo.json': { globalPassThroughEnv: ['LD_PRELOAD', 'TETHER_SOCKET'] },
  });
  assert.deepEqual(
    plan.map((f) => [f.target, f.changes.map((c) => [c.path.join('.'), c.merge])]),
    [
      [{ kind: 'config' }, [['feature.network.incoming.port_mapping', true], ['feature.env.override', true]]],
      [{ kind: 'launch' }, [['env', true]]],
      [{ kind: 'file', name: 'turbo.json' }, [['globalPassThroughEnv', false]]],
    ],
  );
  assert.deepEqual(planEdit(null), []);
  assert.deepEqual(planEdit([1]), []);
  assert.match(describeEdit(plan, '.tether/tether.json'), /^\.tether\/tether\.json: feature\.network\.incoming\.port_mapping \+= \[\[3000,8080\]\]/);
});

test('Apply port_mapping appends to the list and keeps the file as it was', () => {
  const text = '{\n  // the target\n  "target": "pid:1",\n  "feature": {\n    "network": { "incoming": { "port_mapping": [[80, 8080]] } }\n  }\n}\n';
  const [f] = planEdit({ 'feature.network.incoming.port_mapping': [[3000, 8080], [80, 8080]] });
  const out = applyChanges(text, f.changes);
  assert.ok(out.includes('// the target'), out);
  const parsed = JSON.parse(out.replace(/\/\/.*$/m, ''));
  assert.deepEqual(parsed.feature.network.incoming.port_mapping, [[80, 8080], [3000, 8080]]);
  assert.equal(parsed.target, 'pid:1');
});

test('objects merge key by key; missing parents and files are created', () => {
  const [f] = planEdit({ 'feature.env.override': { NODE_ENV: 'development' }, 'feature.env.exclude': ['NX_NEXT_DIR'], 'feature.fs.mode': 'localwithoverrides' });
  const out = JSON.parse(applyChanges('{"feature": {"env": {"override": {"A": "1"}, "exclude": ["B"]}}}', f.changes));
  assert.deepEqual(out.feature.env, { override: { A: '1', NODE_ENV: 'development' }, exclude: ['B', 'NX_NEXT_DIR'] });
  assert.equal(out.feature.fs.mode, 'localwithoverrides');
  const fresh = JSON.parse(applyChanges('', f.changes));
  assert.deepEqual(fresh.feature.env.exclude, ['NX_NEXT_DIR']);
});

test('launch.FIELD edits the named configuration in launch.json', () => {
  const launchJson = `{
  "version": "0.2.0",
  "configurations": [
    { "name": "web", "type": "node", "request": "launch" },
    { "name": "api", "type": "go", "request": "launch", "env": { "A": "1" } }
  ]
}`;
  const i = launchIndex(launchJson, 'api');
  assert.equal(i, 1);
  assert.equal(launchIndex(launchJson, 'nope'), undefined);
  assert.equal(launchIndex('not json', 'api'), undefined);
  const [f] = planEdit({ 'launch.env': { CGO_ENABLED: '1' } });
  const out = JSON.parse(applyChanges(launchJson, f.changes, ['configurations', i!]));
  assert.deepEqual(out.configurations[1].env, { A: '1', CGO_ENABLED: '1' });
  assert.equal(out.configurations[0].env, undefined);
});

test('a file edit sets the complete value', () => {
  const [f] = planEdit({ 'turbo.json': { globalPassThroughEnv: ['LD_PRELOAD', 'TETHER_SOCKET'] } });
  const out = JSON.parse(applyChanges('{"globalPassThroughEnv": ["FOO"], "tasks": {}}', f.changes));
  assert.deepEqual(out.globalPassThroughEnv, ['LD_PRELOAD', 'TETHER_SOCKET']);
  assert.deepEqual(out.tasks, {});
});

test('the config file\'s target: a string or target.path', () => {
  assert.equal(configTarget('{"target": "pid:12"}'), 'pid:12');
  assert.equal(configTarget('{"target": {"path": "pod/web", "namespace": "x"}}'), 'pod/web');
  assert.equal(configTarget('{"target": {}}'), undefined);
  assert.equal(configTarget('{}'), undefined);
  assert.equal(configTarget('{ "target": "pid:1", // trailing\n }'), 'pid:1');
  assert.equal(configTarget('not json'), undefined);
});
