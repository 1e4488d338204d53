// Builds the extension with esbuild: one bundle, dist/extension.js ("vscode" stays external).
//   --production  minified, no source map (what `npm run package` ships)
//   --watch       rebuild on change
//   --tests       also bundle the unit tests into out/test/unit/ (for node --test)
// The config file's JSON Schema is copied from ../../schemas/ into schemas/ for jsonValidation.
import { build, context } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'fs';
import { dirname, join } from 'path';
import { fileURLToPath } from 'url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const production = args.has('--production');

mkdirSync(join(root, 'schemas'), { recursive: true });
copyFileSync(join(root, '..', '..', 'schemas', 'tether.schema.json'), join(root, 'schemas', 'tether.schema.json'));

const extension = {
  absWorkingDir: root,
  entryPoints: ['src/extension.ts'],
  outfile: 'dist/extension.js',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['vscode'],
  // jsonc-parser's UMD build cannot be bundled; its ES module build can.
  mainFields: ['module', 'main'],
  sourcemap: !production,
  minify: production,
  logLevel: 'warning',
};

if (args.has('--watch')) {
  const ctx = await context(extension);
  await ctx.watch();
  console.log('watching src/ …');
} else {
  await build(extension);
}

if (args.has('--tests')) {
  rmSync(join(root, 'out'), { recursive: true, force: true });
  const dir = join(root, 'test', 'unit');
  await build({
    absWorkingDir: root,
    entryPoints: readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => `test/unit/${f}`),
    outdir: 'out/test/unit',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // Unit tests cover the modules that do not need VS Code; importing it is a mistake.
    external: ['vscode'],
    mainFields: ['module', 'main'],
    sourcemap: 'inline',
    logLevel: 'warning',
  });
}
