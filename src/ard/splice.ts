// The spliced-in loss ("CE loss recovered"): how much of the model's next-token loss survives
// when the layer's residual stream is replaced by the SAE's reconstruction.
//
// For N clips spread evenly over the capture (first window of each), the chat prompt
// "<audio> Describe the sound." (the capture prompt) is followed by an answer: the clip's caption
// when the capture manifest has one, else the model's own greedy answer (unsteered, up to
// maxNewTokens). The answer's tokens, then <|im_end|>, are the targets. Three teacher-forced passes
// per clip give log p(token | prefix) at every answer position:
//   clean  the model as it is;
//   sae    after decoder layer L, x ← x̂ = SAE(x) at the positions the SAE was trained on (the
//          capture's: the audio tokens with positions 'audio', every position with 'all');
//   zero   x ← 0 at the same positions.
// CE_s = mean over every answer token of all clips of −log p_s(token);
// recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean) (1: no loss from splicing; 0: as bad as
// removing the layer's residual there; null when CE_zero = CE_clean);
// KL_s = mean over the same tokens of KL(p_clean ‖ p_s) = Σ_v p_clean(v) (log p_clean(v) − log p_s(v)).
// Log-softmax and the sums run on the host in f64.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAudio } from '../audio/decode.js';
import type { AudioLLM } from '../model/audiollm.js';
import { buildChatPrompt } from '../model/chat.js';
import { generate } from '../model/generate.js';
import { cast, map, where } from '../tensor/ops/elementwise.js';
import { tensor } from '../tensor/tensor.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import { DEFAULT_CAPTURE_PROMPT } from './capture.js';
import type { CaptureManifest } from './run.js';
import { clearFresh, fileDigest, isFresh, markFresh, readCaptureManifest, runPaths, stageInputsKey } from './run.js';

/** Bump when the meaning of splice-L.json changes. */
export const SPLICE_VERSION = 1;

export const SPLICE_METHOD =
  'answers (caption, else the model\'s greedy answer) + <|im_end|> after the capture prompt, teacher-forced; at layer L the residual ' +
  'is replaced by the SAE reconstruction (sae) or 0 (zero) at the positions the SAE was trained on; CE = mean −log p over answer tokens; ' +
  'recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean); KL = mean over answer tokens of KL(p_clean ‖ p_spliced)';

/** What splicing needs from an SAE: x̂ for x [rows, d] in the caller's units. */
export interface Reconstructor {
  reconstruct(x: Tensor): Tensor;
}

/** One teacher-forced sequence: prompt + answer ids, audio features for the placeholders. */
export interface SpliceItem {
  ids: readonly number[];
  audio: Tensor | null;
  /** Index in `ids` of the first answer token (≥ 1). */
  answerStart: number;
  /** Positions [from, to) replaced at the layer. */
  splice: { from: number; to: number };
}

export interface SpliceFigures {
  /** Answer tokens scored. */
  tokens: number;
  ceClean: number;
  ceSae: number;
  ceZero: number;
  /** (CE_zero − CE_sae) / (CE_zero − CE_clean); null when zero-ablation does not change the loss. */
  recovered: number | null;
  /** Mean KL(p_clean ‖ p_sae) and KL(p_clean ‖ p_zero) per answer token (nats). */
  klSae: number;
  klZero: number;
}

export interface SpliceFile extends SpliceFigures {
  layer: number;
  method: string;
  question: string;
  /** The capture's positions the SAE was trained on (and that were replaced). */
  positions: 'audio' | 'all';
  clips: number;
  /** Clips whose answer was their caption / the model's greedy answer. */
  captionAnswers: number;
  greedyAnswers: number;
  /** Which SAE (its file, or the folder given with --sae). */
  sae: string;
}

/** Log-softmax of each row of `logits` [rows, V] (f64). */
function logSoftmaxRows(logits: Float32Array, rows: number, V: number): Float64Array {
  const out = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[r * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v]! - mx);
    const lse = mx + Math.log(s);
    for (let v = 0; v < V; v++) out[r * V + v] = logits[r * V + v]! - lse;
  }
  return out;
}

/** KL(p ‖ q) summed over rows, from log-probabilities [rows, V]. */
function klSum(lp: Float64Array, lq: Float64Array, rows: number, V: number): number {
  let kl = 0;
  for (let r = 0; r < rows; r++) {
    for (let v = 0; v < V; v++) {
      const a = lp[r * V + v]!;
      const p = Math.exp(a);
      if (p > 0) kl += p * (a - lq[r * V + v]!);
    }
  }
  return kl;
}

/** CE and KL of the three settings over `items` (see the header). Hooks are removed afterwards. */
export async function spliceLoss(
  model: AudioLLM,
  sae: Reconstructor,
  layer: number,
  items: readonly SpliceItem[],
  onProgress?: (done: number, total: number) => void,
): Promise<SpliceFigures> {
  const V = model.config.text_config.vocab_size;
  let tokens = 0;
  const ce = { clean: 0, sae: 0, zero: 0 };
  const kl = { sae: 0, zero: 0 };
  let done = 0;
  for (const it of items) {
    const L = it.ids.length;
    if (!(it.answerStart >= 1 && it.answerStart < L)) throw new ArdError(`spliced loss: answer start ${it.answerStart} outside 1..${L - 1}`);
    if (!(it.splice.from >= 0 && it.splice.from <= it.splice.to && it.splice.to <= L)) throw new ArdError(`spliced loss: splice range [${it.splice.from}, ${it.splice.to}) outside the ${L} positions`);
    // logits at answerStart − 1 … L − 2 predict ids[answerStart … L − 1]
    const rows = Array.from({ length: L - it.answerStart }, (_, i) => it.answerStart - 1 + i);
    const targets = rows.map((r) => it.ids[r + 1]!);
    const pass = async (mode: 'clean' | 'sae' | 'zero'): Promise<Float64Array> => {
      const handle =
        mode === 'clean'
          ? null
          : model.hooks.add({
              layer,
              fn: (resid, ctx) => {
                // rows of this pass inside the splice range (prefill: the whole sequence at once)
                const mask = new Float32Array(ctx.rows);
                let any = false;
                for (let i = 0; i < ctx.rows; i++) {
                  const pos = ctx.start + i;
                  if (pos >= it.splice.from && pos < it.splice.to) [mask[i], any] = [1, true];
                }
                if (!any) return;
                const cond = tensor(model.engine, mask, [ctx.rows, 1]);
                if (mode === 'zero') return map([resid, cond], 'select(a, 0.0, b > 0.0)', { name: 'splice_zero', out: resid.dtype });
                let xh = sae.reconstruct(resid);
                if (xh.dtype !== resid.dtype) xh = cast(xh, resid.dtype);
                if (xh.shape.length !== 2 || xh.shape[0] !== ctx.rows || xh.shape[1] !== resid.shape[1]) {
                  throw new ArdError(`spliced loss: the SAE reconstructed [${xh.shape}] from [${resid.shape}]`);
                }
                return where(cond, xh, resid);
              },
            });
      try {
        const logits = model.forward(it.ids, it.audio, { logits: rows })!;
        const host = await logits.toFloat32();
        logits.dispose();
        return logSoftmaxRows(host, rows.length, V);
      } finally {
        handle?.remove();
      }
    };
    const lc = await pass('clean');
    const ls = await pass('sae');
    const lz = await pass('zero');
    targets.forEach((y, r) => {
      ce.clean -= lc[r * V + y]!;
      ce.sae -= ls[r * V + y]!;
      ce.zero -= lz[r * V + y]!;
    });
    kl.sae += klSum(lc, ls, rows.length, V);
    kl.zero += klSum(lc, lz, rows.length, V);
    tokens += rows.length;
    onProgress?.(++done, items.length);
  }
  const n = Math.max(1, tokens);
  const [c, s, z] = [ce.clean / n, ce.sae / n, ce.zero / n];
  const denom = z - c;
  return {
    tokens,
    ceClean: r6(c),
    ceSae: r6(s),
    ceZero: r6(z),
    recovered: Math.abs(denom) > 1e-9 ? r6((z - s) / denom) : null,
    klSae: r6(kl.sae / n),
    klZero: r6(kl.zero / n),
  };
}

function r6(x: number): number {
  return Math.round(x * 1e6) / 1e6 + 0; // + 0: no −0 in the file
}

/** `count` clip indices spread evenly over `n` clips (all of them when count ≥ n). */
export function spreadClips(n: number, count: number): number[] {
  if (count >= n) return [...Array(n).keys()];
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * n) / count));
}

/** A manifest clip's audio file: absolute, relative to the working folder, or to the corpus. */
function clipFile(manifest: CaptureManifest, file: string): string {
  if (path.isAbsolute(file) || fs.existsSync(file)) return file;
  const corpus = manifest.corpus;
  if (corpus) {
    const p = path.join(corpus, file);
    if (fs.existsSync(p)) return p;
  }
  return file; // readAudio names it in its error
}

export interface SpliceStageOptions {
  model: AudioLLM;
  sae: Reconstructor;
  run: string;
  layer: number;
  /** Identity of the SAE for the freshness key (a digest) and for the file. */
  saeId: { digest: string; name: string };
  /** Clips scored (default 32). */
  clips?: number;
  /** Greedy answers: at most this many tokens (default 32). */
  maxNewTokens?: number;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** The spliced-loss stage: capture manifest + model + SAE → RUN/splice-L.json (skipped when fresh). */
export async function spliceStage(o: SpliceStageOptions): Promise<SpliceFile & { skipped: boolean; file: string }> {
  const paths = runPaths(o.run, o.layer);
  const file = splicePath(o.run, o.layer);
  const manifest = readCaptureManifest(o.run);
  const count = o.clips ?? 32;
  if (!Number.isInteger(count) || count < 1) throw new ArdError(`spliced loss: clips = ${count} must be a positive integer`);
  const maxNewTokens = o.maxNewTokens ?? 32;
  const question = manifest.prompt ?? DEFAULT_CAPTURE_PROMPT;
  const positions = manifest.positions === 'all' ? 'all' : 'audio';
  const key = stageInputsKey('splice', { version: SPLICE_VERSION, layer: o.layer, sae: o.saeId.digest, model: o.model.source, capture: fileDigest(paths.manifest), count, maxNewTokens });
  if (!o.force && isFresh(file, key)) return { ...readJson<SpliceFile>(file), skipped: true, file };
  clearFresh(file);
  const tok = o.model.tokenizer;
  if (!tok) throw new ArdError(`${o.model.source}: no tokenizer.json (the spliced loss needs one)`);
  const imEnd = tok.tokenToId('<|im_end|>');
  if (imEnd === undefined) throw new ArdError(`${tok.source}: the tokenizer has no <|im_end|> token`);
  const picks = spreadClips(manifest.clips.length, count);
  const items: SpliceItem[] = [];
  let captionAnswers = 0;
  let greedyAnswers = 0;
  try {
    for (const ci of picks) {
      const c = manifest.clips[ci]!;
      const samples = (await readAudio(clipFile(manifest, c.file))).samples;
      const w = o.model.windows(samples.length)[0];
      if (!w) continue; // too short to give an audio token (capture skipped it too)
      const audio = o.model.encodeAudio(samples.subarray(w.from, w.to));
      const prompt = buildChatPrompt(tok, [w.tokens], question, { audioTokenIndex: o.model.audioTokenIndex });
      let answer: number[];
      if (c.caption && c.caption.trim()) {
        answer = [...tok.encode(c.caption.trim(), { allowSpecial: false }), imEnd];
        captionAnswers++;
      } else {
        const g = await generate(o.model, { ids: prompt, audio }, { maxNewTokens });
        answer = g.stopToken !== undefined ? [...g.tokens, g.stopToken] : g.tokens;
        greedyAnswers++;
      }
      if (!answer.length) {
        audio.dispose();
        continue;
      }
      const first = prompt.indexOf(o.model.audioTokenIndex);
      const splice = positions === 'all' ? { from: 0, to: prompt.length + answer.length } : { from: first, to: first + w.tokens };
      items.push({ ids: [...prompt, ...answer], audio, answerStart: prompt.length, splice });
    }
    if (!items.length) throw new ArdError(`${paths.manifest}: no clip gave an answer to score`);
    const figures = await spliceLoss(o.model, o.sae, o.layer, items, o.onProgress);
    const out: SpliceFile = {
      layer: o.layer, method: SPLICE_METHOD, question, positions, clips: items.length, captionAnswers, greedyAnswers, sae: o.saeId.name, ...figures,
    };
    writeJsonAtomic(file, out);
    markFresh(file, key);
    return { ...out, skipped: false, file };
  } finally {
    for (const it of items) it.audio?.dispose();
  }
}

export function splicePath(run: string, layer: number): string {
  return path.join(run, `splice-${layer}.json`);
}

/** RUN/splice-L.json, or null when the stage has not run. */
export function readSplice(run: string, layer: number): SpliceFile | null {
  const file = splicePath(run, layer);
  return fs.existsSync(file) ? readJson<SpliceFile>(file) : null;
}
