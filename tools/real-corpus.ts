// Builds the real labelled corpus from recordings that Debian packages ship (called by
// tools/make-real-corpus.sh, which finds or unpacks the packages and passes their roots).
//
//   npx tsx tools/real-corpus.ts --out DIR --root PKG=DIR ... [--per-source N] [--formats mixed|wav] [--seed S]
//   (--per-source N: N clips of each source, taken from the train, val and test splits in turn)
//
// Every clip is re-encoded from the package's file (same rate and channels) into one format chosen
// by a hash of its name (WAV, FLAC, Ogg Vorbis, Ogg Opus or MP3; --formats wav: WAV only), and gets a
// row in labels.csv: file, labels (';'-separated), split (seeded hash of the clip id, 70/15/15, the
// same rule as ardgpu's own hash split with --split-seed S), speaker, gender, gender_source, language,
// speech, caption, package, source_file. Gender is filled only where the package itself states it
// (see GENDER below); it is never inferred from the sound. Identical source files are kept once.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { hash32 } from '../src/corpus/rng.js';

const run = promisify(execFile);

interface Entry {
  pkg: string;
  /** absolute source file */
  src: string;
  /** sox input options (for headerless files) */
  inOpts?: string[];
  /** excerpt [start s, length s] */
  trim?: [number, number];
  /** output path below --out, without extension */
  id: string;
  /** the group --per-source samples from */
  group: string;
  labels: string[];
  speaker: string;
  gender: '' | 'female' | 'male';
  genderSource: string;
  language: string;
  speech: boolean;
  caption: string;
}

const args = process.argv.slice(2);
function flag(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
const OUT = path.resolve(flag('--out') ?? 'real-corpus');
const PER_SOURCE = flag('--per-source') ? Number(flag('--per-source')) : Infinity;
const FORMATS = flag('--formats') ?? 'mixed';
const SEED = Number(flag('--seed') ?? 0);
const JOBS = Math.max(1, Number(flag('--jobs') ?? Math.min(4, os.availableParallelism())));
if (!['mixed', 'wav'].includes(FORMATS)) throw new Error(`--formats ${FORMATS}: use mixed or wav`);
if (!(PER_SOURCE > 0)) throw new Error('--per-source: a positive number');
const roots = new Map<string, string>();
args.forEach((a, i) => {
  if (a === '--root') {
    const [pkg, dir] = args[i + 1]!.split('=');
    roots.set(pkg!, dir!);
  }
});

const LANGUAGE_NAME: Record<string, string> = { en: 'english', es: 'spanish', fr: 'french', it: 'italian', ru: 'russian' };

// Asterisk sound packs name their folder LANG_COUNTRY_GENDER_VOICE (f or m), which is where the
// genders come from. The two older prompt packages name a person but no gender: left blank.
interface Voice { pkg: string; dir: string; speaker: string; lang: string; gender: '' | 'female' | 'male'; genderSource: string; nonSpeechToo?: boolean }
const FOLDER_RULE = (folder: string) => `Asterisk voice folder ${folder} (_f_: female; _m_: male) as its Debian package installs it`;
const VOICES: Voice[] = [
  { pkg: 'asterisk-core-sounds-en-wav', dir: 'usr/share/asterisk/sounds/en_US_f_Allison', speaker: 'en_US_f_Allison', lang: 'en', gender: 'female', genderSource: FOLDER_RULE('en_US_f_Allison'), nonSpeechToo: true },
  { pkg: 'asterisk-core-sounds-es-wav', dir: 'usr/share/asterisk/sounds/es_MX_f_Allison', speaker: 'es_MX_f_Allison', lang: 'es', gender: 'female', genderSource: FOLDER_RULE('es_MX_f_Allison') },
  { pkg: 'asterisk-core-sounds-fr-wav', dir: 'usr/share/asterisk/sounds/fr_CA_f_June', speaker: 'fr_CA_f_June', lang: 'fr', gender: 'female', genderSource: FOLDER_RULE('fr_CA_f_June') },
  { pkg: 'asterisk-core-sounds-it-wav', dir: 'usr/share/asterisk/sounds/it_IT_m_Carlo', speaker: 'it_IT_m_Carlo', lang: 'it', gender: 'male', genderSource: FOLDER_RULE('it_IT_m_Carlo') },
  { pkg: 'asterisk-core-sounds-ru-wav', dir: 'usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU', speaker: 'ru_RU_f_IvrvoiceRU', lang: 'ru', gender: 'female', genderSource: FOLDER_RULE('ru_RU_f_IvrvoiceRU') },
  { pkg: 'asterisk-prompt-it-menardi-wav', dir: 'usr/share/asterisk/sounds/it_IT_f_Menardi', speaker: 'it_IT_f_Menardi', lang: 'it', gender: 'female', genderSource: FOLDER_RULE('it_IT_f_Menardi') },
  { pkg: 'asterisk-prompt-fr-armelle', dir: 'usr/share/asterisk/sounds/fr', speaker: 'fr-armelle', lang: 'fr', gender: '', genderSource: '' },
  { pkg: 'asterisk-prompt-es-co', dir: 'usr/share/asterisk/sounds/es', speaker: 'es-co', lang: 'es', gender: '', genderSource: '' },
];
// Asterisk files that hold no speech (same names in every pack); taken from the pack marked
// nonSpeechToo, silence from every pack (identical copies are dropped later).
const ASTERISK_NON_SPEECH: Record<string, string[]> = {
  beep: ['beep'],
  beeperr: ['beep'],
  'ascending-2tone': ['tone'],
  'descending-2tone': ['tone'],
  'tt-monkeys': ['animal'],
};
const SHORT_WORD_FOLDERS = new Set(['digits', 'letters', 'phonetic']);

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

function rootOf(pkg: string): string | undefined {
  const r = roots.get(pkg);
  return r && fs.existsSync(r) ? r : undefined;
}

function speechCaption(gender: string, lang: string, what: string): string {
  const who = gender === 'female' ? 'A woman' : gender === 'male' ? 'A man' : 'A person';
  return `${who} speaking ${lang[0]!.toUpperCase()}${lang.slice(1)}: ${what}.`;
}

function speechLabels(gender: string, lang: string, shortWord: boolean): string[] {
  return ['speech', ...(gender ? [`${gender} speech`] : []), ...(shortWord ? ['single word'] : []), ...(lang ? [lang] : [])];
}

const entries: Entry[] = [];

for (const v of VOICES) {
  const r = rootOf(v.pkg);
  if (!r) continue;
  const base = path.join(r, v.dir);
  if (!fs.existsSync(base)) throw new Error(`${v.pkg}: ${base} is missing`);
  const lang = LANGUAGE_NAME[v.lang]!;
  for (const f of walk(base)) {
    if (!/\.(wav|gsm)$/.test(f)) continue;
    const rel = path.relative(base, f).replace(/\.(wav|gsm)$/, '');
    const name = path.basename(rel);
    const folder = rel.includes('/') ? rel.split('/')[0]! : '';
    const common = { pkg: v.pkg, src: f, id: `${v.speaker}/${rel}`, speaker: '', gender: '' as const, genderSource: '', language: '', speech: false };
    if (folder === 'silence') {
      entries.push({ ...common, group: 'asterisk-silence', labels: ['silence'], caption: `Silence (${name} s, Asterisk ${v.speaker}/silence/${name}).` });
      continue;
    }
    if (ASTERISK_NON_SPEECH[rel]) {
      if (v.nonSpeechToo) entries.push({ ...common, group: 'asterisk-non-speech', labels: ASTERISK_NON_SPEECH[rel]!, caption: `A telephone ${ASTERISK_NON_SPEECH[rel]![0]} (Asterisk "${rel}").` });
      continue;
    }
    const short = SHORT_WORD_FOLDERS.has(folder);
    entries.push({
      ...common,
      group: v.speaker,
      labels: speechLabels(v.gender, lang, short),
      speaker: v.speaker,
      gender: v.gender,
      genderSource: v.genderSource,
      language: lang,
      speech: true,
      caption: speechCaption(v.gender, lang, short ? `a single word, Asterisk prompt "${rel}"` : `a telephone system prompt, Asterisk "${rel}"`),
    });
  }
}

// pocketsphinx-testdata: CMU Sphinx test recordings (16 kHz). No speaker genders are documented.
{
  const r = rootOf('pocketsphinx-testdata');
  if (r) {
    const d = path.join(r, 'usr/share/pocketsphinx/test/data');
    const transcripts = new Map<string, string>();
    for (const t of ['librivox/transcription', 'cards/cards.transcription']) {
      for (const line of fs.readFileSync(path.join(d, t), 'utf8').split('\n')) {
        const m = /^<s>\s*(.*?)\s*<\/s>\s*\(([^)]+)\)/.exec(line.trim());
        if (m) transcripts.set(`${path.dirname(t)}/${m[2]}`, m[1]!);
      }
    }
    const raw16 = ['-t', 'raw', '-r', '16000', '-e', 'signed', '-b', '16', '-c', '1', '-L'];
    const files: [string, string, string | undefined, string[] | undefined, string][] = [];
    for (const sub of ['librivox', 'cards']) {
      for (const f of fs.readdirSync(path.join(d, sub)).filter((n) => n.endsWith('.wav')).sort()) {
        const key = `${sub}/${f.replace(/\.wav$/, '')}`;
        const what = sub === 'librivox' ? 'a sentence from a LibriVox reading of Sense and Sensibility' : 'playing-card names';
        files.push([path.join(d, sub, f), key, transcripts.get(key), undefined, what]);
      }
    }
    files.push([path.join(d, 'goforward.raw'), 'goforward', undefined, raw16, 'a spoken command']);
    files.push([path.join(d, 'numbers.raw'), 'numbers', undefined, raw16, 'a recording from the CMU Sphinx tests']);
    files.push([path.join(d, 'something.raw'), 'something', undefined, raw16, 'a recording from the CMU Sphinx tests']);
    files.push([path.join(d, 'tidigits/dhd.2934z.raw'), 'tidigits/dhd.2934z', undefined, raw16, 'a digit string']);
    for (const [src, key, text, inOpts, what] of files) {
      entries.push({
        pkg: 'pocketsphinx-testdata', src, inOpts, id: `pocketsphinx/${key}`, group: 'pocketsphinx',
        labels: speechLabels('', 'english', false),
        // one LibriVox chapter is one reader; the other files name no speaker
        speaker: key.startsWith('librivox/') ? 'librivox-sense-and-sensibility-01' : '',
        gender: '', genderSource: '', language: 'english', speech: true,
        caption: speechCaption('', 'english', text ? `${what}, "${text}"` : what),
      });
    }
  }
}

// alsa-utils: speaker-test's spoken channel names (speaker not documented) and its noise signal.
{
  const r = rootOf('alsa-utils');
  if (r) {
    const d = path.join(r, 'usr/share/sounds/alsa');
    for (const f of fs.readdirSync(d).filter((n) => n.endsWith('.wav')).sort()) {
      const name = f.replace(/\.wav$/, '');
      const common = { pkg: 'alsa-utils', src: path.join(d, f), id: `alsa/${name}`, group: 'alsa', gender: '' as const, genderSource: '' };
      if (name === 'Noise') entries.push({ ...common, labels: ['noise'], speaker: '', language: '', speech: false, caption: 'Noise: the ALSA speaker test signal.' });
      else entries.push({ ...common, labels: speechLabels('', 'english', false), speaker: '', language: 'english', speech: true, caption: speechCaption('', 'english', `the loudspeaker channel name "${name.replace('_', ' ')}"`) });
    }
  }
}

// Desktop sound themes: every file is an event sound; a specific class only where the file name
// names the sound itself. freedesktop's audio-channel-*/audio-test-signal are alsa-utils' recordings
// again (same length, credited to the ALSA developers), so they are left out.
const SPECIFIC: [RegExp, string][] = [
  [/(^|-)bell$/, 'bell'],
  [/alarm-clock/, 'alarm'],
  [/phone-incoming-call|phone-ring/i, 'telephone ring'],
  [/camera-shutter/, 'camera shutter'],
];
function themeSounds(pkg: string, dir: string, group: string, theme: string) {
  const r = rootOf(pkg);
  if (!r) return;
  const d = path.join(r, dir);
  for (const f of fs.readdirSync(d).filter((n) => /\.(oga|ogg)$/.test(n)).sort()) {
    const name = f.replace(/\.(oga|ogg)$/, '');
    if (/^audio-channel-|^audio-test-signal$/.test(name)) continue;
    const specific = SPECIFIC.find(([re]) => re.test(name))?.[1];
    entries.push({
      pkg, src: path.join(d, f), id: `${group}/${name}`, group,
      labels: ['notification sound', ...(specific ? [specific] : [])],
      speaker: '', gender: '', genderSource: '', language: '', speech: false,
      caption: `A desktop notification sound${specific ? ` (${specific})` : ''}: ${theme} "${name}".`,
    });
  }
}
themeSounds('sound-theme-freedesktop', 'usr/share/sounds/freedesktop/stereo', 'freedesktop', 'freedesktop sound theme');
themeSounds('yaru-theme-sound', 'usr/share/sounds/Yaru/stereo', 'yaru', 'Yaru sound theme');
themeSounds('oxygen-sounds', 'usr/share/sounds', 'oxygen', 'KDE Oxygen sound theme');

// sound-icons: short instrument notes and effects named by what they are.
{
  const r = rootOf('sound-icons');
  if (r) {
    const d = path.join(r, 'usr/share/sounds/sound-icons');
    const INSTRUMENT = /^(cembalo|chord|cymbaly|electric-piano|guitar|klavichord|percussion|piano|trumpet|violoncello|xylofon)/;
    for (const f of fs.readdirSync(d).filter((n) => n.endsWith('.wav')).sort()) {
      const name = f.replace(/\.wav$/, '');
      const labels = INSTRUMENT.test(name) ? ['musical instrument'] : /^canary/.test(name) ? ['bird'] : ['sound effect'];
      entries.push({
        pkg: 'sound-icons', src: path.join(d, f), id: `sound-icons/${name}`, group: 'sound-icons', labels,
        speaker: '', gender: '', genderSource: '', language: '', speech: false,
        caption: `A short sound icon (${labels[0]}): "${name}".`,
      });
    }
  }
}

// asterisk-moh-opsound-wav: music on hold, minutes long; 10 s excerpts every 40 s.
{
  const r = rootOf('asterisk-moh-opsound-wav');
  if (r) {
    const d = path.join(r, 'usr/share/asterisk/moh');
    for (const f of fs.readdirSync(d).filter((n) => n.endsWith('.wav')).sort()) {
      const name = f.replace(/\.wav$/, '');
      const seconds = (fs.statSync(path.join(d, f)).size - 44) / 16000; // 8 kHz 16-bit mono
      for (let t = 10; t + 10 <= seconds; t += 40) {
        entries.push({
          pkg: 'asterisk-moh-opsound-wav', src: path.join(d, f), trim: [t, 10], id: `moh/${name}-${t}s`, group: 'moh', labels: ['music'],
          speaker: '', gender: '', genderSource: '', language: '', speech: false,
          caption: `Music on hold: 10 s of "${name}" from ${t} s.`,
        });
      }
    }
  }
}

if (!entries.length) throw new Error('no source package found: pass --root PKG=DIR');

function splitOf(id: string): string {
  const u = hash32(SEED, id) / 4294967296; // as assignSplits in src/corpus/layouts/records.ts
  return u < 0.7 ? 'train' : u < 0.85 ? 'val' : 'test';
}

// Drop identical sources (same bytes and excerpt), keeping the first by id.
entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
const seen = new Set<string>();
let dropped = 0;
let kept = entries.filter((e) => {
  const key = createHash('sha256').update(fs.readFileSync(e.src)).digest('hex') + (e.trim ? `@${e.trim.join(',')}` : '');
  if (seen.has(key)) {
    dropped++;
    return false;
  }
  seen.add(key);
  return true;
});
if (Number.isFinite(PER_SOURCE)) {
  const byGroup = new Map<string, Entry[]>();
  for (const e of kept) byGroup.set(e.group, [...(byGroup.get(e.group) ?? []), e]);
  const pick = new Set<Entry>();
  // per group, splits in turn (train, val, test, train, …), each in a seeded order: a small subset
  // still has clips to validate and test on
  for (const list of byGroup.values()) {
    const bySplit = ['train', 'val', 'test'].map((sp) => list.filter((e) => splitOf(e.id) === sp).sort((a, b) => hash32(SEED, 'pick', a.id) - hash32(SEED, 'pick', b.id)));
    for (let taken = 0, turn = 0; taken < Math.min(PER_SOURCE, list.length); turn++) {
      const from = bySplit[turn % 3]!;
      if (from.length) {
        pick.add(from.shift()!);
        taken++;
      }
    }
  }
  kept = kept.filter((e) => pick.has(e));
}

const FORMAT_LIST = ['wav', 'flac', 'ogg', 'opus', 'mp3'] as const;
type Fmt = (typeof FORMAT_LIST)[number];
const formatOf = (e: Entry): Fmt => (FORMATS === 'wav' ? 'wav' : FORMAT_LIST[hash32(SEED, 'format', e.id) % FORMAT_LIST.length]!);

async function encode(e: Entry, fmt: Fmt, dest: string, tmpDir: string) {
  // -R: sox's repeatable random numbers (dither, Ogg serial); -D: no dither
  const input = [...(e.inOpts ?? []), e.src];
  const effects = e.trim ? ['trim', String(e.trim[0]), String(e.trim[1])] : [];
  if (fmt === 'wav' || fmt === 'flac' || fmt === 'ogg') {
    const typeOpts = fmt === 'wav' ? ['-t', 'wav', '-e', 'signed-integer', '-b', '16'] : fmt === 'flac' ? ['-t', 'flac', '-b', '16'] : ['-t', 'vorbis', '-C', '3'];
    await run('sox', ['-R', '-D', '-V1', ...input, ...typeOpts, dest, ...effects]);
    return;
  }
  const wav = path.join(tmpDir, `${hash32(e.id).toString(16)}.wav`);
  await run('sox', ['-R', '-D', '-V1', ...input, '-t', 'wav', '-e', 'signed-integer', '-b', '16', wav, ...effects]);
  if (fmt === 'opus') await run('opusenc', ['--quiet', '--serial', String(hash32(SEED, 'serial', e.id) & 0x7fffffff), '--bitrate', '32', wav, dest]);
  else await run('lame', ['--quiet', '-b', '32', '--noreplaygain', wav, dest]);
  fs.rmSync(wav);
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'real-corpus-'));
  const rows: string[] = ['file,labels,split,speaker,gender,gender_source,language,speech,caption,package,source_file'];
  const jobs = kept.map((e) => ({ e, fmt: formatOf(e) }));
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const j = jobs[next++];
      if (!j) return;
      const dest = path.join(OUT, `${j.e.id}.${j.fmt}`);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      const part = `${dest}.part`;
      try {
        await encode(j.e, j.fmt, part, tmpDir);
      } catch (err) {
        throw new Error(`${j.e.src}: encoding to ${j.fmt} failed: ${(err as Error).message.split('\n')[0]}`);
      }
      fs.renameSync(part, dest);
      if (++done % 250 === 0) process.stderr.write(`real-corpus: ${done}/${jobs.length} clips\n`);
    }
  };
  await Promise.all(Array.from({ length: JOBS }, worker));
  fs.rmSync(tmpDir, { recursive: true, force: true });
  for (const { e, fmt } of jobs) {
    const srcRel = path.relative(roots.get(e.pkg)!, e.src) + (e.trim ? ` [${e.trim[0]}-${e.trim[0] + e.trim[1]} s]` : '');
    rows.push([
      `${e.id}.${fmt}`, e.labels.join(';'), splitOf(e.id), e.speaker, e.gender, e.genderSource, e.language,
      e.speech ? 'yes' : 'no', e.caption, e.pkg, `/${srcRel}`,
    ].map(csvField).join(','));
  }
  fs.writeFileSync(path.join(OUT, 'labels.csv.part'), rows.join('\n') + '\n');
  fs.renameSync(path.join(OUT, 'labels.csv.part'), path.join(OUT, 'labels.csv'));
  const count = (p: (e: Entry) => boolean) => kept.filter(p).length;
  process.stderr.write(
    `real-corpus: ${kept.length} clips in ${OUT} (${count((e) => e.speech)} speech: ${count((e) => e.gender === 'female')} female, ` +
      `${count((e) => e.gender === 'male')} male, ${count((e) => e.speech && !e.gender)} unknown; ${count((e) => !e.speech)} non-speech)` +
      `${dropped ? `; ${dropped} duplicate source files left out` : ''}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`make-real-corpus: ${(err as Error).message}\n`);
  process.exit(1);
});
