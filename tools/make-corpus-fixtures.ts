// Writes one small corpus per layout that src/corpus/clips.ts reads (tiny WAVs plus the layout's
// metadata files, with the real datasets' column names), each with a few bad rows of every kind the
// readers report: a missing file, a duplicate, an empty label set, a file outside the folder.
//
//   npx tsx tools/make-corpus-fixtures.ts OUTDIR
//
// test/corpus-layouts.test.ts calls makeCorpusFixtures() into a temporary folder.
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeWav } from '../src/audio/wav.js';
import { writeFileAtomic } from '../src/util/fs.js';

/** A quarter-second tone (long enough for an audio token); the frequency tells the files apart. */
function tone(file: string, hz: number): void {
  const x = new Float32Array(4000);
  for (let i = 0; i < x.length; i++) x[i] = 0.5 * Math.sin((2 * Math.PI * hz * i) / 16000);
  writeWav(file, x);
}

const text = (file: string, lines: string[]) => writeFileAtomic(file, lines.join('\n') + '\n');

export interface CorpusFixtures {
  /** Audio a.wav, b.wav, sub/c.wav, d.wav, e.wav with label files beside them. */
  labels: string;
  esc50: string;
  fsd50k: string;
  urbansound8k: string;
  classes: string;
}

export function makeCorpusFixtures(root: string): CorpusFixtures {
  const out: CorpusFixtures = {
    labels: path.join(root, 'labels'),
    esc50: path.join(root, 'esc50'),
    fsd50k: path.join(root, 'fsd50k'),
    urbansound8k: path.join(root, 'urbansound8k'),
    classes: path.join(root, 'classes'),
  };

  // label files: the usual column names (CSV), other names (TSV, chosen by flags), JSONL
  ['a.wav', 'b.wav', 'sub/c.wav', 'd.wav', 'e.wav'].forEach((f, i) => tone(path.join(out.labels, f), 300 + 100 * i));
  tone(path.join(root, 'outside.wav'), 200);
  text(path.join(out.labels, 'labels.csv'), [
    'file,labels,split,caption,speaker',
    'a.wav,"dog,bark",train,a dog barks,',
    'b.wav,speech;female speech,val,a woman speaks,s1',
    'sub/c.wav,rain,test,,',
    'missing.wav,rain,train,,', // line 5: not found
    'a.wav,dog,train,,', // line 6: duplicate of line 2
    'd.wav,,train,,', // line 7: no labels
    '../outside.wav,rain,train,,', // line 8: outside the corpus folder
    'e.wav, ; ,test,,', // line 9: separators only, no labels
  ]);
  text(path.join(out.labels, 'tags.tsv'), [
    ['path', 'tags', 'part', 'group'],
    ['a.wav', 'dog', 'part-a', '1'],
    ['b.wav', 'speech', 'part-b', '2'],
    ['sub/c.wav', 'rain', 'part-a', '3'],
  ].map((cells) => cells.join('\t')));
  text(path.join(out.labels, 'labels.jsonl'), [
    JSON.stringify({ file: 'a.wav', labels: ['dog', 'bark'], fold: 1 }),
    JSON.stringify({ file: 'b.wav', labels: 'speech; male speech', fold: 2 }),
    '{"file": "sub/c.wav", "labels": ', // line 3: bad JSON
    JSON.stringify({ file: 'd.wav', labels: ['rain'], fold: 3 }),
    JSON.stringify({ file: 'e.wav', labels: [] }), // line 5: no labels
  ]);
  text(path.join(out.labels, 'plain.csv'), ['file,labels', ...['a.wav', 'b.wav', 'sub/c.wav', 'd.wav', 'e.wav'].map((f) => `${f},tone`)]);

  // ESC-50: meta/esc50.csv, audio/; two clips per fold, one fold-5 row without its file
  const esc: string[] = ['filename,fold,target,category,esc10,src_file,take'];
  for (let fold = 1; fold <= 5; fold++) {
    for (const [target, category] of [[0, 'dog'], [10, 'rain']] as const) {
      const name = `${fold}-${100 + target}-A-${target}.wav`;
      tone(path.join(out.esc50, 'audio', name), 200 + 50 * fold + target);
      esc.push(`${name},${fold},${target},${category},${target === 0 ? 'True' : 'False'},${100 + target},A`);
    }
  }
  esc.push('5-999-A-0.wav,5,0,dog,True,999,A'); // line 12: not found
  text(path.join(out.esc50, 'meta', 'esc50.csv'), esc);

  // FSD50K: ground truth with quoted comma-separated labels, dev (train/val) and eval audio
  const gt = path.join(out.fsd50k, 'FSD50K.ground_truth');
  text(path.join(gt, 'vocabulary.csv'), ['0,Bark,/m/05tny_', '1,Dog,/m/0bt9lr', '2,Domestic_animals_and_pets,/m/068hy', '3,Rain,/m/06mb1']);
  text(path.join(gt, 'dev.csv'), [
    'fname,labels,mids,split',
    '101,"Bark,Dog,Domestic_animals_and_pets","/m/05tny_,/m/0bt9lr,/m/068hy",train',
    '102,Rain,/m/06mb1,train',
    '103,Rain,/m/06mb1,val',
    '104,"Rain,Thunder","/m/06mb1,/m/0ngt1",train', // line 5: 'Thunder' is not in the vocabulary
  ]);
  text(path.join(gt, 'eval.csv'), ['fname,labels,mids', '201,"Dog,Domestic_animals_and_pets","/m/0bt9lr,/m/068hy"', '202,Rain,/m/06mb1']);
  for (const f of ['101', '102', '103', '104']) tone(path.join(out.fsd50k, 'FSD50K.dev_audio', `${f}.wav`), 400);
  for (const f of ['201', '202']) tone(path.join(out.fsd50k, 'FSD50K.eval_audio', `${f}.wav`), 500);

  // UrbanSound8K: metadata/UrbanSound8K.csv, audio/fold<N>/; three folds
  const us: string[] = ['slice_file_name,fsID,start,end,salience,fold,classID,class'];
  for (let fold = 1; fold <= 3; fold++) {
    for (const [id, cls] of [[3, 'dog_bark'], [8, 'siren']] as const) {
      const name = `${1000 + fold}-${id}-0-0.wav`;
      tone(path.join(out.urbansound8k, 'audio', `fold${fold}`, name), 300 + 30 * fold + id);
      us.push(`${name},${1000 + fold},0.0,0.5,1,${fold},${id},${cls}`);
    }
  }
  us.push('1001-3-0-0.wav,1001,0.0,0.5,1,1,3,dog_bark'); // line 8: duplicate of line 2
  text(path.join(out.urbansound8k, 'metadata', 'UrbanSound8K.csv'), us);

  // a folder per class, clips at any depth below their class folder
  tone(path.join(out.classes, 'dog', 'd1.wav'), 300);
  tone(path.join(out.classes, 'dog', 'deep', 'd2.wav'), 310);
  tone(path.join(out.classes, 'rain', 'r1.wav'), 320);
  text(path.join(out.classes, 'README.txt'), ['not audio']);
  return out;
}

function main(): void {
  const outDir = process.argv[2];
  if (!outDir) {
    console.error('usage: npx tsx tools/make-corpus-fixtures.ts OUTDIR');
    process.exit(2);
  }
  const made = makeCorpusFixtures(outDir);
  console.log(`wrote ${Object.keys(made).length} corpora to ${outDir}: ${Object.values(made).join(', ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) main();
