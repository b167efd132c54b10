// Held-out evaluation of an AudioLLM on the corpus: asks each clip of a split the training
// questions (greedy decoding, the chat template of chat.ts) and scores the answers against the
// manifest:
//   gender accuracy   — "What is the gender of the speaker?" on speech clips
//   speaking accuracy — "Is anyone speaking?" on every clip
//   label precision / recall (micro, over clips) — labels named in "What sounds can you hear?",
//                       read by matching the known label strings (parseLabels)
//   latency           — wall time of ask() (WAV → log-mel → encoder → prefill → decode) per answer
// Each clip's audio is encoded once and shared by its questions; latency is measured separately
// with the full ask() on the first few clips.
import * as path from 'node:path';
import { readAudio } from '../audio/decode.js';
import { CONCEPT_LABELS } from '../corpus/manifest.js';
import { openClipSource, type ClipRecord, type CorpusOptions } from '../corpus/clips.js';
import type { Engine } from '../gpu/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { writeJsonAtomic } from '../util/fs.js';
import { AudioLLM } from '../model/audiollm.js';
import { askDetailed, buildChatPrompt } from '../model/chat.js';
import { generateBatch } from '../model/generate.js';
import { loadAudioLLM } from '../model/load.js';
import { PROMPTS, type PromptKind, labelsAnswer, parseGender, parseLabels, parseYesNo } from './data.js';

export interface EvalOptions {
  engine: Engine;
  /** A model directory, or a loaded model. */
  model: string | AudioLLM;
  corpus: string;
  /** How to read a user's corpus (label file and its columns, fold and hash splits). */
  corpusOptions?: CorpusOptions;
  /** The split to ask (default test); 'all' asks every clip. */
  split?: string;
  /** Evaluate at most this many clips of the split (in manifest order). */
  maxClips?: number;
  /** Clips whose ask() latency is timed (default 8). */
  latencyClips?: number;
  /** Write the result as JSON here. */
  out?: string;
  /** Clips whose answers are kept in `examples` (default 24; Infinity keeps every clip's). */
  examples?: number;
  /** Which questions to ask (default all four; a real check set may ask only gender and speaking). */
  questions?: PromptKind[];
  /** Longest answer (default 48 tokens). */
  maxNewTokens?: number;
  /** Clips whose questions are decoded together (default 8: up to 32 sequences per batch). */
  batchClips?: number;
  /** With a model directory: its weight dtype (default f32; 'auto' follows config.json). */
  dtype?: 'auto' | 'f32' | 'f16';
  log?: (line: string) => void;
}

export interface ClipAnswers {
  file: string;
  labels: string[];
  answers: Partial<Record<PromptKind, string>>;
}

export interface EvalResult {
  model: string;
  corpus: string;
  split: string;
  clips: number;
  /** Rows of the corpus's metadata left out (missing or duplicate file, bad value), one line each. */
  problems: string[];
  /** Clips that did not decode, one line each (left out of every figure). */
  bad: string[];
  gender: { accuracy: number; correct: number; total: number; unparsed: number };
  speaking: { accuracy: number; correct: number; total: number; unparsed: number };
  labels: {
    precision: number;
    recall: number;
    f1: number;
    /** Clips whose named label set equals the truth. */
    exactMatch: number;
    truePositives: number;
    falsePositives: number;
    falseNegatives: number;
    perLabel: Record<string, { precision: number; recall: number; support: number }>;
    /** Recall over the clips with 1, 2, 3… labels (mixtures are where labels go missing). */
    byLabelCount: Record<string, { clips: number; labels: number; found: number; recall: number }>;
  };
  latency: { clips: number; question: string; meanMs: number; medianMs: number; maxMs: number };
  /** Seconds the evaluation took. */
  seconds: number;
  examples: ClipAnswers[];
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);

/** Scores answers of one clip into running totals (exported for tests). */
export function scoreLabels(named: readonly string[], truth: readonly string[]): { tp: number; fp: number; fn: number } {
  const t = new Set(truth);
  const n = new Set(named);
  let tp = 0;
  for (const l of n) if (t.has(l)) tp++;
  return { tp, fp: n.size - tp, fn: t.size - tp };
}

export async function evalModel(o: EvalOptions): Promise<EvalResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const split = o.split ?? 'test';
  const own = typeof o.model === 'string';
  const model = typeof o.model === 'string' ? await loadAudioLLM(o.engine, o.model, { dtype: o.dtype ?? 'f32' }) : o.model;
  try {
    const tok = model.tokenizer;
    if (!tok) throw new ArdError(`${model.source}: the model has no tokenizer.json`);
    const source = openClipSource(o.corpus, o.corpusOptions);
    const all = source.clips();
    const problems = source.problems();
    for (const p of problems) log(`left out: ${p}`);
    let entries = split === 'all' ? all : all.filter((e) => e.split === split);
    if (o.maxClips) entries = entries.slice(0, o.maxClips);
    if (entries.length === 0) throw new ArdError(`${source.origin}: no ${split} clips`);
    const known = [...new Set([...CONCEPT_LABELS, ...all.flatMap((e) => e.labels)])];
    const maxNew = o.maxNewTokens ?? 48;
    const decode = (ids: number[]) => tok.decode(ids, { skipSpecial: true }).trim();

    const gender = { correct: 0, total: 0, unparsed: 0 };
    const speaking = { correct: 0, total: 0, unparsed: 0 };
    let tp = 0, fp = 0, fn = 0, exact = 0;
    const per = new Map<string, { tp: number; fp: number; fn: number }>();
    const perOf = (l: string) => per.get(l) ?? (per.set(l, { tp: 0, fp: 0, fn: 0 }), per.get(l)!);
    const examples: ClipAnswers[] = [];
    const byCount = new Map<number, { clips: number; labels: number; found: number }>();

    // clips are answered in groups: every question of every clip of a group decoded together
    // (generateBatch gives each prompt's answer as generating it alone would)
    const group = Math.max(1, Math.floor(o.batchClips ?? 8));
    const asked = new Set<PromptKind>(o.questions ?? ['describe', 'gender', 'sounds', 'speaking']);
    const answered: Partial<Record<PromptKind, string>>[] = [];
    const bad: string[] = [];
    const answerGroup = async (g0: number): Promise<void> => {
      const feats: Tensor[] = [];
      const prompts: { clip: number; kind: PromptKind; ids: number[]; audio: Tensor }[] = [];
      try {
        for (let i = g0; i < Math.min(entries.length, g0 + group); i++) {
          const e: ClipRecord = entries[i]!;
          // as ask does by default: a clip longer than the model's window is judged on its first window
          let samples: Float32Array;
          try {
            samples = (await readAudio(e.file)).samples.subarray(0, model.windowSamples);
          } catch (err) {
            // a clip that does not decode is reported and left out; the rest is evaluated
            if (!(err instanceof ArdError)) throw err;
            bad.push(err.message);
            log(`skipped ${err.message}`);
            continue;
          }
          const counts = model.audioTokenCounts(samples.length);
          const f = model.encodeAudio(samples);
          feats.push(f);
          // a question is asked where the corpus knows its answer (labels, speech, the speaker's gender)
          const kinds: PromptKind[] = e.labelled === false ? [] : ['describe'];
          if (e.speech === true && e.gender) kinds.push('gender');
          if (e.labelled !== false) kinds.push('sounds');
          if (e.speech !== undefined) kinds.push('speaking');
          for (const kind of kinds.filter((k) => asked.has(k))) prompts.push({ clip: i, kind, ids: buildChatPrompt(tok, counts, PROMPTS[kind], { audioTokenIndex: model.audioTokenIndex }), audio: f });
        }
        const rs = await generateBatch(model, prompts, { maxNewTokens: maxNew, maxBatch: 32 });
        rs.forEach((r, j) => ((answered[prompts[j]!.clip] ??= {})[prompts[j]!.kind] = decode(r.tokens)));
      } finally {
        for (const f of feats) f.dispose();
      }
    };

    for (let i = 0; i < entries.length; i++) {
      const e: ClipRecord = entries[i]!;
      if (i % group === 0) await answerGroup(i);
      const answers = answered[i];
      if (!answers) continue; // did not decode (in `bad`)
      if (answers.gender !== undefined) {
        const g = parseGender(answers.gender);
        gender.total++;
        if (g === null) gender.unparsed++;
        else if (g === e.gender) gender.correct++;
      }
      if (answers.speaking !== undefined) {
        const yn = parseYesNo(answers.speaking);
        speaking.total++;
        if (yn === null) speaking.unparsed++;
        else if (yn === e.speech) speaking.correct++;
      }
      if (answers.sounds !== undefined) {
        const named = parseLabels(answers.sounds, known);
        const s = scoreLabels(named, e.labels);
        tp += s.tp;
        fp += s.fp;
        fn += s.fn;
        if (s.fp === 0 && s.fn === 0) exact++;
        const bc = byCount.get(e.labels.length) ?? { clips: 0, labels: 0, found: 0 };
        byCount.set(e.labels.length, { clips: bc.clips + 1, labels: bc.labels + s.tp + s.fn, found: bc.found + s.tp });
        for (const l of named) (e.labels.includes(l) ? perOf(l).tp++ : perOf(l).fp++);
        for (const l of e.labels) if (!named.includes(l)) perOf(l).fn++;
      }
      if (examples.length < (o.examples ?? 24)) examples.push({ file: path.relative(o.corpus, e.file), labels: e.labels, answers });
      if ((i + 1) % 20 === 0 || i + 1 === entries.length) {
        log(`eval ${split}: ${i + 1}/${entries.length} clips, gender ${(100 * ratio(gender.correct, gender.total)).toFixed(1)} %, speaking ${(100 * ratio(speaking.correct, speaking.total)).toFixed(1)} %, labels P ${(100 * ratio(tp, tp + fp)).toFixed(1)} % R ${(100 * ratio(tp, tp + fn)).toFixed(1)} %`);
      }
    }

    // latency of the whole ask() path, WAV file in, text out
    const decoded = entries.filter((_, i) => answered[i] !== undefined);
    const nLat = Math.min(o.latencyClips ?? 8, decoded.length);
    const times: number[] = [];
    for (let i = 0; i < nLat; i++) {
      const ts = performance.now();
      await askDetailed(model, decoded[i]!.file, PROMPTS.sounds, { maxNewTokens: maxNew });
      times.push(performance.now() - ts);
    }
    const sorted = [...times].sort((a, b) => a - b);
    const precision = ratio(tp, tp + fp);
    const recall = ratio(tp, tp + fn);
    const perLabel: EvalResult['labels']['perLabel'] = {};
    for (const [l, c] of [...per].sort((a, b) => a[0].localeCompare(b[0]))) {
      perLabel[l] = { precision: ratio(c.tp, c.tp + c.fp), recall: ratio(c.tp, c.tp + c.fn), support: c.tp + c.fn };
    }
    const byLabelCount: EvalResult['labels']['byLabelCount'] = {};
    for (const [n, c] of [...byCount].sort((a, b) => a[0] - b[0])) byLabelCount[String(n)] = { ...c, recall: ratio(c.found, c.labels) };
    const result: EvalResult = {
      model: model.source,
      corpus: o.corpus,
      split,
      clips: entries.length - bad.length,
      problems,
      bad,
      gender: { accuracy: ratio(gender.correct, gender.total), ...gender },
      speaking: { accuracy: ratio(speaking.correct, speaking.total), ...speaking },
      labels: {
        precision,
        recall,
        f1: ratio(2 * precision * recall, precision + recall),
        exactMatch: ratio(exact, entries.length),
        truePositives: tp,
        falsePositives: fp,
        falseNegatives: fn,
        perLabel,
        byLabelCount,
      },
      latency: {
        clips: nLat,
        question: PROMPTS.sounds,
        meanMs: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length),
        medianMs: sorted[Math.floor(sorted.length / 2)] ?? 0,
        maxMs: sorted[sorted.length - 1] ?? 0,
      },
      seconds: (performance.now() - t0) / 1000,
      examples,
    };
    log(
      `eval ${split} (${entries.length} clips): gender ${(100 * result.gender.accuracy).toFixed(1)} %, speaking ${(100 * result.speaking.accuracy).toFixed(1)} %, ` +
        `labels precision ${(100 * precision).toFixed(1)} % recall ${(100 * recall).toFixed(1)} % ` +
        `(by labels per clip: ${Object.entries(byLabelCount).map(([n, c]) => `${n}: ${(100 * c.recall).toFixed(1)} %`).join(', ')}), ask() ${result.latency.medianMs.toFixed(0)} ms median`,
    );
    if (o.out) writeJsonAtomic(o.out, result);
    return result;
  } finally {
    if (own) model.dispose();
  }
}

/** The expected answer to the labels question (for reports). */
export { labelsAnswer };
