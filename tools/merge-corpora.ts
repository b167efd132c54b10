// Joins probe corpora (make-corpus folders) into one, for training on several at once:
// OUT/<name> links to each source folder, OUT/manifest.jsonl lists every source's clips with their
// files under <name>/, and OUT/corpus.json records the sources. Nothing is copied.
//
//   npx tsx tools/merge-corpora.ts --out OUT default=/data/corpus3k varied=/data/var4k
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CORPUS_FILE, MANIFEST_FILE, readManifest } from '../src/corpus/manifest.js';
import { writeFileAtomic } from '../src/util/fs.js';

function main(argv: string[]): void {
  const at = argv.indexOf('--out');
  const out = at >= 0 ? argv[at + 1] : undefined;
  const sources = argv.filter((_, i) => i !== at && i !== at + 1);
  if (!out || sources.length === 0) throw new Error('usage: merge-corpora.ts --out OUT name=DIR [name=DIR …]');
  fs.mkdirSync(out, { recursive: true });
  const lines: string[] = [];
  const info: Record<string, unknown> = {};
  for (const s of sources) {
    const [name, dir] = s.split('=');
    if (!name || !dir || !/^[\w-]+$/.test(name)) throw new Error(`merge-corpora: '${s}' is not name=DIR`);
    const abs = path.resolve(dir);
    const entries = readManifest(abs); // first: a bad source leaves no link behind
    const link = path.join(out, name);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(abs, link);
    for (const e of entries) lines.push(JSON.stringify({ ...e, file: `${name}/${e.file}` }));
    info[name] = { dir: abs, corpus: JSON.parse(fs.readFileSync(path.join(abs, CORPUS_FILE), 'utf8')) };
  }
  writeFileAtomic(path.join(out, MANIFEST_FILE), lines.join('\n') + '\n');
  writeFileAtomic(path.join(out, CORPUS_FILE), JSON.stringify({ merged: info }, null, 2) + '\n');
  console.error(`merge-corpora: ${lines.length} clips from ${sources.length} corpora in ${out}`);
}

try {
  main(process.argv.slice(2));
} catch (e: any) {
  console.error(`error: ${e.message}`);
  process.exit(1);
}
