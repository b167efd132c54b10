// Bundles the browser build of ardgpu: web/engine/entry.ts → dist/web/ardgpu-browser.js (ESM).
// esbuild (a devDependency) because tsc cannot bundle: the WGSL kernels are inlined as a virtual
// module, node:fs/path/url become the in-memory shims in web/engine/, every other node: module a
// stub that throws if called, and the Node-only 'webgpu' package is left out (the page's
// navigator.gpu is used). The output must not import any node: module (checked here).
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(import.meta.dirname, '..');
const out = path.join(root, 'dist', 'web', 'ardgpu-browser.js');
const shims = { 'node:fs': 'fs-shim.ts', fs: 'fs-shim.ts', 'node:path': 'path-shim.ts', path: 'path-shim.ts', 'node:url': 'url-shim.ts', url: 'url-shim.ts' };

const browser = {
  name: 'ardgpu-browser',
  setup(b) {
    b.onResolve({ filter: /^ardgpu:kernels$/ }, () => ({ path: 'kernels', namespace: 'ardgpu-kernels' }));
    b.onLoad({ filter: /.*/, namespace: 'ardgpu-kernels' }, () => {
      const dir = path.join(root, 'kernels');
      const all = Object.fromEntries(fs.readdirSync(dir).filter((f) => f.endsWith('.wgsl')).sort().map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
      return { contents: `export const KERNELS = ${JSON.stringify(all)};`, loader: 'js' };
    });
    b.onResolve({ filter: /^(node:)?(fs|path|url)$/ }, (a) => ({ path: path.join(root, 'web', 'engine', shims[a.path]) }));
    b.onResolve({ filter: /^webgpu$/ }, () => ({ path: 'webgpu', namespace: 'ardgpu-stub' }));
    b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path, namespace: 'ardgpu-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'ardgpu-stub' }, (a) => ({
      contents: `const fail = () => { throw new Error(${JSON.stringify(`${a.path} is not available in the browser build of ardgpu`)}); };
module.exports = new Proxy(fail, { get: (t, k) => (k === '__esModule' ? false : k === 'then' ? undefined : module.exports), apply: fail, construct: fail });`,
      loader: 'js',
    }));
  },
};

const r = await esbuild.build({
  entryPoints: [path.join(root, 'web', 'engine', 'entry.ts')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outfile: out,
  plugins: [browser],
  banner: { js: 'globalThis.process ??= { env: {}, platform: "browser", versions: {} };' },
  logLevel: 'warning',
  metafile: true,
});
const text = fs.readFileSync(out, 'utf8');
const nodeImports = text.match(/\bfrom\s*["']node:[^"']+["']|\bimport\(\s*["']node:[^"']+["']\s*\)/g);
if (nodeImports) throw new Error(`${out}: still imports ${nodeImports.join(', ')}`);
const kb = (fs.statSync(out).size / 1024).toFixed(0);
if (!process.argv.includes('--quiet')) console.log(`browser build: ${path.relative(root, out)} (${kb} KiB, ${Object.keys(r.metafile.inputs).length} inputs)`);
