// AR&D description: caption a feature's most representative clips (a pluggable Describer; the
// AudioLLM captioner is wired elsewhere) and summarise the captions into one short concept name.
//
// Summariser (summariseCaptions):
//   1. Each caption is lower-cased and split into words; every word is mapped to a canonical
//      token through SYNONYMS (woman → female, talking → speech, beeping → alarm, …) or a light
//      stemmer (plural -s, -ing, doubled consonants), keeping the most frequent surface form of
//      each token for display. Stopwords and generic words ("a", "with", "sound", "audio",
//      "hear", …) are dropped; a token repeated back to back is kept once ("voice speaking" →
//      speech).
//   2. n-grams (n = 1…3) of the remaining token sequence are counted by document frequency (the
//      number of captions containing them; a caption counts once). Bigrams and trigrams are
//      order-free ("bell ringing" and "ringing bell" are one), displayed in their commonest order.
//   3. Name = the most frequent trigram if it occurs in ≥ half of the captions and at least as
//      often as the best bigram, else the most frequent bigram if it occurs in ≥ half, else the
//      top unigram — plus a second unigram when that one also occurs in ≥ half. Ties: higher
//      total count, then higher document frequency of the parts, then alphabetical.
//   support = document frequency of the chosen n-gram / number of captions.
// The same canonicalisation decides whether a name agrees with a ground-truth label
// (namesAgree, used by evaluate's name accuracy).
import { ArdError } from '../util/errors.js';
import { writeJsonAtomic } from '../util/fs.js';
import type { CaptureClip } from './run.js';
import { clearFresh, fileDigest, isFresh, markFresh, readCaptureManifest, runPaths, stageInputsKey } from './run.js';
import type { FeatureEntry, FeaturesFile } from './rank.js';
import { readFeatures } from './rank.js';

/** A clip handed to a describer: the capture manifest's entry plus its index. */
export interface ClipInfo extends CaptureClip {
  index: number;
}

/** Something that writes a free-text caption for a clip (the AudioLLM, a human, a stub). */
export interface Describer {
  caption(clip: ClipInfo): Promise<string>;
  /**
   * Optional: captions of many clips at once, in order, each what caption() gives for it (the
   * AudioLLM decodes them as one batch). describeFeatures uses it when present.
   */
  captionMany?(clips: ClipInfo[]): Promise<string[]>;
  /** What makes its captions what they are (model, prompt, ...): part of describe's inputs. */
  readonly id?: string;
}

/** canonical token → words mapped to it (the canonical word itself included). */
export const SYNONYMS: Readonly<Record<string, readonly string[]>> = {
  female: ['female', 'females', 'woman', 'women', 'girl', 'girls', 'lady', 'ladies', 'feminine'],
  male: ['male', 'males', 'man', 'men', 'boy', 'boys', 'guy', 'guys', 'masculine', 'gentleman'],
  speech: ['speech', 'speaking', 'speak', 'speaks', 'spoken', 'talking', 'talk', 'talks', 'voice', 'voices', 'saying', 'says', 'say', 'said', 'speaker', 'speakers', 'conversation', 'sentence', 'words', 'narration', 'narrating'],
  alarm: ['alarm', 'alarms', 'beep', 'beeps', 'beeping', 'alert', 'alerts'],
  ticking: ['tick', 'ticks', 'ticking', 'tock', 'tocking'],
  knocking: ['knock', 'knocks', 'knocking', 'knocked'],
  clapping: ['clap', 'claps', 'clapping', 'applause', 'applauding'],
  silence: ['silence', 'silent', 'quiet', 'nothing'],
  drip: ['drip', 'drips', 'dripping', 'drop', 'drops', 'droplets'],
  whistle: ['whistle', 'whistles', 'whistling', 'whistled'],
  heartbeat: ['heartbeat', 'heartbeats', 'heart', 'hearts', 'heartbeating', 'thump', 'thumping', 'pulse'],
  birdsong: ['birdsong', 'bird', 'birds', 'songbird', 'songbirds', 'tweeting', 'chirruping'],
  hum: ['hum', 'hums', 'humming', 'drone', 'droning'],
  engine: ['engine', 'engines', 'motor', 'motors'],
  siren: ['siren', 'sirens', 'wailing', 'wail'],
  buzz: ['buzz', 'buzzing', 'buzzer', 'buzzes'],
  chirp: ['chirp', 'chirps', 'chirping', 'sweep', 'sweeps'],
  rising: ['rising', 'rise', 'rises', 'upward', 'ascending', 'up'],
  falling: ['falling', 'fall', 'falls', 'downward', 'descending', 'down'],
  tone: ['tone', 'tones', 'pure'],
  noise: ['noise', 'noises', 'hiss', 'hissing', 'static'],
  rain: ['rain', 'raining', 'rainfall', 'rainy', 'pattering', 'patter'],
  bell: ['bell', 'bells', 'chime', 'chimes', 'ringing', 'ring', 'rings'],
  low: ['low', 'deep', 'lower'],
  high: ['high', 'higher', 'piercing', 'shrill'],
  music: ['music', 'musical', 'melody', 'tune'],
};

const STOPWORDS = new Set(
  ('a an the of with and or in on at is are was were be been being by for from to this that these those it its ' +
    'some while as over into onto then there here what which who whom very can could you i we one two three ' +
    'several series someone something somebody people person is has have having their his her they them also ' +
    'just like but not no so than too out off near far next behind under above about around against between ' +
    'during after before again together mixed background foreground distant close loud soft faint clear steady ' +
    'repeating repeated repeatedly regular continuous constant sustained short long brief single multiple many ' +
    'few other another kind type sort').split(/\s+/),
);
// Words that describe the medium, not the concept.
const GENERIC = new Set(
  ('sound sounds sounding audio clip clips recording recordings recorded hear hears heard hearing listen ' +
    'listening noise-like heard audible pitched pitch level levels sample samples snippet track played playing ' +
    'play plays being made making produced producing').split(/\s+/),
);

const CANON = new Map<string, string>();
for (const [canon, words] of Object.entries(SYNONYMS)) for (const w of words) CANON.set(w, canon);

/** Light stemmer for words without a synonym entry. */
export function stem(w: string): string {
  if (CANON.has(w)) return CANON.get(w)!;
  let s = w;
  if (s.length > 5 && s.endsWith('ing')) {
    s = s.slice(0, -3);
    if (/([b-df-hj-np-tv-z])\1$/.test(s) && !/(ll|ss|zz)$/.test(s)) s = s.slice(0, -1);
  } else if (s.length > 4 && s.endsWith('ies')) s = s.slice(0, -3) + 'y';
  else if (s.length > 3 && s.endsWith('s') && !/(ss|us|is)$/.test(s)) s = s.slice(0, -1);
  return CANON.get(s) ?? s;
}

export interface Token {
  canon: string;
  surface: string;
}

/** Content tokens of a text: lower-cased, synonyms/stems mapped, stop/generic words dropped. */
export function contentTokens(text: string): Token[] {
  const words = text.toLowerCase().replace(/[’']/g, '').split(/[^a-z0-9]+/).filter(Boolean);
  const out: Token[] = [];
  for (const w of words) {
    if (STOPWORDS.has(w) || GENERIC.has(w) || /^\d+$/.test(w)) continue;
    const canon = stem(w);
    if (STOPWORDS.has(canon) || GENERIC.has(canon)) continue;
    if (out.length && out[out.length - 1]!.canon === canon) continue; // "voice speaking" → speech
    out.push({ canon, surface: w });
  }
  return out;
}

/** Canonical token set of a text (names and labels alike). */
export function canonicalTokens(text: string): Set<string> {
  return new Set(contentTokens(text).map((t) => t.canon));
}

/**
 * Does a feature name agree with a ground-truth label? Yes when every canonical token of the label
 * appears in the name ("a woman talking" ~ "female speech"; "clock ticking" ~ "ticking";
 * "speech" does not match "female speech": the name must say what the label says).
 */
export function namesAgree(name: string, label: string): boolean {
  const n = canonicalTokens(name);
  const l = canonicalTokens(label);
  if (l.size === 0 || n.size === 0) return false;
  for (const t of l) if (!n.has(t)) return false;
  return true;
}

export interface Summary {
  name: string;
  /** Share of captions containing the chosen n-gram, in [0, 1]. */
  support: number;
}

interface Gram {
  key: string; // canonical tokens sorted, joined by ' '
  df: number;
  count: number;
  orders: Map<string, number>; // canonical order → count
  parts: string[];
}

export function summariseCaptions(captions: readonly string[]): Summary {
  const docs = captions.map((c) => contentTokens(String(c ?? ''))).filter((t) => t.length > 0);
  if (docs.length === 0) return { name: 'unknown', support: 0 };
  const surface = new Map<string, Map<string, number>>();
  for (const doc of docs) {
    for (const t of doc) {
      const m = surface.get(t.canon) ?? new Map<string, number>();
      m.set(t.surface, (m.get(t.surface) ?? 0) + 1);
      surface.set(t.canon, m);
    }
  }
  const grams = [new Map<string, Gram>(), new Map<string, Gram>(), new Map<string, Gram>()];
  for (const doc of docs) {
    const seen = new Set<string>();
    for (let n = 1; n <= 3; n++) {
      for (let i = 0; i + n <= doc.length; i++) {
        const parts = doc.slice(i, i + n).map((t) => t.canon);
        if (new Set(parts).size < n) continue;
        const key = [...parts].sort().join(' ');
        const order = parts.join(' ');
        const g = grams[n - 1]!.get(key) ?? { key, df: 0, count: 0, orders: new Map(), parts: [...parts].sort() };
        g.count++;
        g.orders.set(order, (g.orders.get(order) ?? 0) + 1);
        if (!seen.has(`${n}:${key}`)) {
          seen.add(`${n}:${key}`);
          g.df++;
        }
        grams[n - 1]!.set(key, g);
      }
    }
  }
  const uni = grams[0]!;
  const partsDf = (g: Gram) => g.parts.reduce((a, p) => a + (uni.get(p)?.df ?? 0), 0);
  const best = (m: Map<string, Gram>): Gram | null => {
    let b: Gram | null = null;
    for (const g of m.values()) {
      if (!b || g.df > b.df || (g.df === b.df && (g.count > b.count || (g.count === b.count && (partsDf(g) > partsDf(b) || (partsDf(g) === partsDf(b) && g.key < b.key)))))) b = g;
    }
    return b;
  };
  const half = docs.length / 2;
  const display = (g: Gram) => {
    let order = '';
    let c = -1;
    for (const [o, n] of g.orders) if (n > c || (n === c && o < order)) [order, c] = [o, n];
    return order
      .split(' ')
      .map((t) => displayWord(t, surface.get(t)))
      .join(' ');
  };
  const tri = best(grams[2]!);
  const bi = best(grams[1]!);
  if (tri && tri.df >= half && (!bi || tri.df >= bi.df)) return { name: display(tri), support: tri.df / docs.length };
  if (bi && bi.df >= half) return { name: display(bi), support: bi.df / docs.length };
  const ranked = [...uni.values()].sort((a, b) => b.df - a.df || b.count - a.count || (a.key < b.key ? -1 : 1));
  const top = ranked[0]!;
  const second = ranked[1];
  if (second && top.df >= half && second.df >= half) {
    // two frequent words that are not adjacent: keep their usual order (first appearance)
    const pos = (t: string) => docs.reduce((a, d) => a + Math.max(0, d.findIndex((x) => x.canon === t)), 0);
    const pair = [top.key, second.key].sort((a, b) => pos(a) - pos(b));
    return { name: pair.map((t) => displayWord(t, surface.get(t))).join(' '), support: Math.min(top.df, second.df) / docs.length };
  }
  return { name: displayWord(top.key, surface.get(top.key)), support: top.df / docs.length };
}

/** Canonical tokens from the synonym table display as themselves; others as their commonest surface form. */
function displayWord(canon: string, forms: Map<string, number> | undefined): string {
  if (SYNONYMS[canon] || !forms) return canon;
  let w = canon;
  let c = -1;
  for (const [s, n] of forms) if (n > c || (n === c && s < w)) [w, c] = [s, n];
  return w;
}

export interface DescribeOptions {
  run: string;
  layer: number;
  describer: Describer;
  /** Captions per feature (the first n clips of H; default all of H). */
  clipsPerFeature?: number;
  /** Re-describe features that already have a name. */
  force?: boolean;
  /** Clips captioned per captionMany call (default 32). */
  batchClips?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Captions each kept feature's H clips and names it; updates RUN/features-L.json in place. Skipped
 * when the features, their names, the capture and the describer are as the last run left them.
 * Features are named one by one (an interrupted run resumes): a name is kept unless `force` or
 * it was written by a different describer (`describedBy`); names set by hand (no describedBy) stay.
 */
export async function describeFeatures(o: DescribeOptions): Promise<FeaturesFile & { skipped?: boolean }> {
  const paths = runPaths(o.run, o.layer);
  const doc = readFeatures(paths.features);
  const describer = stageInputsKey('describer', { id: o.describer.id ?? null, clipsPerFeature: o.clipsPerFeature ?? null });
  const capture = fileDigest(paths.manifest);
  const inputsKey = () =>
    stageInputsKey('describe', { describer, capture, features: doc.features.map((f) => [f.id, f.H.map((c) => c.clip), f.name ?? null, f.describedBy ?? null]) });
  if (!o.force && isFresh(paths.features, inputsKey())) return { ...doc, skipped: true };
  clearFresh(paths.features);
  const manifest = readCaptureManifest(o.run);
  const cache = new Map<number, string>();
  let done = 0;
  const clipInfo = (f: FeatureEntry, clip: number): ClipInfo => {
    const info = manifest.clips[clip];
    if (!info) throw new ArdError(`${paths.features}: feature ${f.id} refers to clip ${clip}, not in the capture manifest`);
    return { ...info, index: clip };
  };
  const todo = (f: FeatureEntry) => !(f.name && !o.force && (f.describedBy === undefined || f.describedBy === describer));
  const clipsOf = (f: FeatureEntry) => f.H.slice(0, o.clipsPerFeature ?? f.H.length);
  const many = o.describer.captionMany?.bind(o.describer);
  const batch = Math.max(1, Math.floor(o.batchClips ?? 32));
  for (let i = 0; i < doc.features.length; i++) {
    const f = doc.features[i]!;
    if (!todo(f)) {
      o.onProgress?.(++done, doc.features.length);
      continue;
    }
    if (many && !clipsOf(f).every((c) => cache.has(c.clip))) {
      // caption the uncached clips of this and the next features, up to one batch, in one call
      const want: ClipInfo[] = [];
      const seen = new Set<number>();
      for (let j = i; j < doc.features.length && want.length < batch; j++) {
        const g = doc.features[j]!;
        if (!todo(g)) continue;
        for (const c of clipsOf(g)) {
          if (cache.has(c.clip) || seen.has(c.clip)) continue;
          seen.add(c.clip);
          want.push(clipInfo(g, c.clip));
        }
      }
      const caps = await many(want);
      if (caps.length !== want.length) throw new ArdError(`describe: the describer gave ${caps.length} captions for ${want.length} clips`);
      want.forEach((c, k) => cache.set(c.index, caps[k]!.trim()));
    }
    const caps: string[] = [];
    for (const c of clipsOf(f)) {
      let cap = cache.get(c.clip);
      if (cap === undefined) {
        cap = (await o.describer.caption(clipInfo(f, c.clip))).trim();
        cache.set(c.clip, cap);
      }
      caps.push(cap);
    }
    applySummary(f, caps);
    f.describedBy = describer;
    writeJsonAtomic(paths.features, doc); // resumable: names written as they come
    o.onProgress?.(++done, doc.features.length);
  }
  writeJsonAtomic(paths.features, doc);
  markFresh(paths.features, inputsKey());
  return doc;
}

export function applySummary(f: FeatureEntry, captions: string[]): void {
  const s = summariseCaptions(captions);
  f.captions = captions;
  f.name = s.name;
  f.support = Math.round(s.support * 1000) / 1000;
}
