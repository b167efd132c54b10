// Qwen2-Audio's chat template and a one-call question answering helper.
//
// The template (Qwen2AudioProcessor's default chat template, with add_generation_prompt):
//   <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
//   <|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{question}<|im_end|>\n
//   <|im_start|>assistant\n
// and the processor expands each <|AUDIO|> into as many placeholders as the clip has audio tokens.
//
// One prompt carries at most one encoder window of each clip (30 s for Qwen2-Audio, 4 s for the
// embedded model), as Qwen2-Audio's processor does: a whole long clip would overflow the decoder's
// positions. askDetailed answers each clip's first window; askWindows answers every window of one clip.
import { openClip, type ClipReader } from '../audio/stream.js';
import type { WavAudio } from '../audio/wav.js';
import type { Tensor } from '../tensor/tensor.js';
import { concat } from '../tensor/ops/layout.js';
import { ArdError } from '../util/errors.js';
import type { AudioLLM, AudioWindow } from './audiollm.js';
import { GenerateOptions, GenerateResult, generate, generateBatch } from './generate.js';
import type { Tokenizer } from './tokenizer.js';

export const DEFAULT_SYSTEM_PROMPT = 'You are a helpful assistant.';
const AUDIO_TOKEN = '<|AUDIO|>';

export interface ChatPromptOptions {
  /** System message; null leaves the system turn out. Default "You are a helpful assistant." */
  system?: string | null;
}

/** The chat-template text for one user turn with `audioCount` clips, then the assistant prefix. */
export function chatPromptText(audioCount: number, question: string, opts: ChatPromptOptions = {}): string {
  const system = opts.system === undefined ? DEFAULT_SYSTEM_PROMPT : opts.system;
  let s = system === null ? '' : `<|im_start|>system\n${system}<|im_end|>\n`;
  s += '<|im_start|>user\n';
  for (let i = 1; i <= audioCount; i++) s += `Audio ${i}: <|audio_bos|>${AUDIO_TOKEN}<|audio_eos|>\n`;
  s += `${question}<|im_end|>\n<|im_start|>assistant\n`;
  return s;
}

/**
 * Token ids of the chat prompt, each <|AUDIO|> expanded to audioTokenCounts[i] copies of the
 * audio placeholder id. The question is tokenized as plain text (special-token strings in it
 * are not honoured).
 */
export function buildChatPrompt(
  tokenizer: Tokenizer,
  audioTokenCounts: readonly number[],
  question: string,
  opts: ChatPromptOptions & { audioTokenIndex?: number } = {},
): number[] {
  const audioId = tokenizer.tokenToId(AUDIO_TOKEN);
  if (audioId === undefined) throw new ArdError(`${tokenizer.source}: the tokenizer has no ${AUDIO_TOKEN} token`);
  if (opts.audioTokenIndex !== undefined && audioId !== opts.audioTokenIndex) {
    throw new ArdError(`${tokenizer.source}: ${AUDIO_TOKEN} is id ${audioId} but the model's audio_token_index is ${opts.audioTokenIndex}`);
  }
  for (const t of ['<|im_start|>', '<|im_end|>', '<|audio_bos|>', '<|audio_eos|>']) {
    if (tokenizer.tokenToId(t) === undefined) throw new ArdError(`${tokenizer.source}: the tokenizer has no ${t} token`);
  }
  // template parts with special tokens, the question as plain text
  const marker = '\u0000QUESTION\u0000';
  const [before, after] = chatPromptText(audioTokenCounts.length, marker, opts).split(marker) as [string, string];
  const ids = [...tokenizer.encode(before), ...tokenizer.encode(question, { allowSpecial: false }), ...tokenizer.encode(after)];
  const out: number[] = [];
  let k = 0;
  for (const id of ids) {
    if (id !== audioId) {
      out.push(id);
      continue;
    }
    const n = audioTokenCounts[k++];
    if (n === undefined) throw new ArdError('chat: more <|AUDIO|> tokens in the prompt than audio clips');
    for (let j = 0; j < n; j++) out.push(audioId);
  }
  if (k !== audioTokenCounts.length) throw new ArdError(`chat: ${audioTokenCounts.length} audio clips but ${k} <|AUDIO|> tokens in the prompt`);
  return out;
}

/** An audio file path (WAV, FLAC, Ogg Vorbis, Ogg Opus or MP3), 16 kHz mono samples, or decoded audio. */
export type AudioInput = string | Float32Array | WavAudio;

/** A clip taken window by window: a file is read a window at a time (src/audio/stream.ts). */
export type ClipWindows = Omit<ClipReader, 'info'>;

/** An audio input as a clip taken window by window; `who` starts the messages of a refusal. */
export async function clipOf(model: AudioLLM, a: AudioInput, who = 'chat'): Promise<ClipWindows> {
  if (typeof a === 'string') return openClip(a, model.windowSamples);
  let s: Float32Array;
  if (a instanceof Float32Array) s = a;
  else if (a && a.samples instanceof Float32Array) {
    if (a.sampleRate !== 16000) throw new ArdError(`${who}: audio at ${a.sampleRate} Hz (16000 expected)`);
    s = a.samples;
  } else throw new ArdError(`${who}: audio must be an audio file path, a Float32Array of 16 kHz samples or decoded audio`);
  return { length: s.length, window: async (from, to) => s.subarray(from, to), close: () => {} };
}

export interface AskOptions extends GenerateOptions, ChatPromptOptions {
  /** Tokenizer to use instead of the model's tokenizer.json. */
  tokenizer?: Tokenizer;
  /** Called with each piece of decoded answer text as it is generated. */
  onText?: (delta: string) => void;
}

export interface AskResult extends GenerateResult {
  text: string;
  promptIds: number[];
  /** Per clip: its length, how many windows it has, and the window the prompt carried (the first). */
  clips: { duration: number; windows: number; window: AudioWindow }[];
}

/**
 * The first window of a clip, its windows and its length (too short a clip is left whole: encoding
 * it reports why). A file longer than one window is not held whole in memory.
 */
async function firstWindow(model: AudioLLM, a: AudioInput): Promise<{ samples: Float32Array; windows: AudioWindow[]; length: number }> {
  const clip = await clipOf(model, a);
  try {
    const windows = model.windows(clip.length);
    const w = windows[0];
    return { samples: await clip.window(w ? w.from : 0, w ? w.to : clip.length), windows, length: clip.length };
  } finally {
    clip.close();
  }
}

/**
 * Asks the model a question about one clip (or several): builds the chat prompt, encodes the
 * audio (the first window of each clip), generates (greedy unless `temperature` is set) and
 * returns the decoded answer.
 */
export async function askDetailed(model: AudioLLM, audio: AudioInput | AudioInput[], question: string, opts: AskOptions = {}): Promise<AskResult> {
  const tok = opts.tokenizer ?? model.tokenizer;
  if (!tok) throw new ArdError(`${model.source}: no tokenizer.json (pass opts.tokenizer)`);
  const firsts: Awaited<ReturnType<typeof firstWindow>>[] = [];
  for (const a of Array.isArray(audio) ? audio : [audio]) firsts.push(await firstWindow(model, a));
  const clips = firsts.map((f) => f.samples);
  const counts = clips.map((s) => model.audioTokens(s.length));
  const ids = buildChatPrompt(tok, counts, question, { ...opts, audioTokenIndex: model.audioTokenIndex });
  const feats: Tensor[] = [];
  let all: Tensor | null = null;
  try {
    for (const s of clips) feats.push(model.encodeAudio(s));
    all = feats.length === 1 ? feats[0]! : concat(feats, 0);
    const stream = tok.decodeStream({ skipSpecial: true });
    let text = '';
    const userOnToken = opts.onToken;
    const res = await generate(model, { ids, audio: all }, {
      ...opts,
      onToken: (t, i) => {
        const d = stream.push(t);
        text += d;
        if (d) opts.onText?.(d);
        return userOnToken?.(t, i);
      },
    });
    const tail = stream.flush();
    if (tail) opts.onText?.(tail);
    text += tail;
    const sr = model.frontend.samplingRate;
    const info = firsts.map((f) => ({ duration: f.length / sr, windows: f.windows.length, window: f.windows[0]! }));
    return { ...res, text, promptIds: ids, clips: info };
  } finally {
    for (const f of feats) f.dispose();
    if (all && !feats.includes(all)) all.dispose();
  }
}

export interface WindowAnswer extends AskResult {
  /** The window of the clip this answer is about. */
  window: AudioWindow;
}

/**
 * Asks `question` about every window of one clip in turn (each answer is exactly what asking that
 * window's audio alone gives). `onWindow` is called before each window is answered.
 */
export async function askWindows(
  model: AudioLLM,
  audio: AudioInput,
  question: string,
  opts: AskOptions & { onWindow?: (w: AudioWindow, count: number) => void } = {},
): Promise<WindowAnswer[]> {
  // a file is measured (and so checked) first, then read a window at a time
  const clip = await clipOf(model, audio);
  try {
    const windows = model.windows(clip.length);
    if (!windows.length) throw new ArdError(`ask: a clip of ${clip.length} samples is too short to give an audio token`);
    const out: WindowAnswer[] = [];
    for (const w of windows) {
      opts.onWindow?.(w, windows.length);
      const r = await askDetailed(model, await clip.window(w.from, w.to), question, opts);
      out.push({ ...r, window: w });
    }
    return out;
  } finally {
    clip.close();
  }
}

/** askDetailed, returning only the answer text. */
export async function ask(model: AudioLLM, audio: AudioInput | AudioInput[], question: string, opts: AskOptions = {}): Promise<string> {
  return (await askDetailed(model, audio, question, opts)).text;
}

/** One clip (or several) and its question, for askBatch. */
export interface AskItem {
  audio: AudioInput | AudioInput[];
  question: string;
}

export interface AskBatchOptions extends Omit<AskOptions, 'onToken' | 'onText'> {
  /** Sequences decoded together at most (default 32); items are encoded and answered in groups of this size. */
  maxBatch?: number;
  /** Called with each piece of item `index`'s answer text as it is generated. */
  onText?: (index: number, delta: string) => void;
}

/**
 * askDetailed for many items at once: each item's prompt is built and its audio encoded as
 * askDetailed does, then the group's answers are generated together (generateBatch). Each answer is
 * askDetailed's for that item alone (greedy: the same tokens; see generateBatch).
 */
export async function askBatch(model: AudioLLM, items: readonly AskItem[], opts: AskBatchOptions = {}): Promise<AskResult[]> {
  const tok = opts.tokenizer ?? model.tokenizer;
  if (!tok) throw new ArdError(`${model.source}: no tokenizer.json (pass opts.tokenizer)`);
  const maxBatch = opts.maxBatch ?? 32;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new ArdError(`askBatch: maxBatch ${maxBatch} must be a positive integer`);
  const out: AskResult[] = [];
  const sr = model.frontend.samplingRate;
  for (let g0 = 0; g0 < items.length; g0 += maxBatch) {
    const group = items.slice(g0, g0 + maxBatch);
    const feats: Tensor[] = [];
    try {
      const prepared: { ids: number[]; audio: Tensor; info: AskResult['clips'] }[] = [];
      for (const item of group) {
        const firsts: Awaited<ReturnType<typeof firstWindow>>[] = [];
        for (const a of Array.isArray(item.audio) ? item.audio : [item.audio]) firsts.push(await firstWindow(model, a));
        const clips = firsts.map((f) => f.samples);
        const ids = buildChatPrompt(tok, clips.map((s) => model.audioTokens(s.length)), item.question, { ...opts, audioTokenIndex: model.audioTokenIndex });
        const parts = clips.map((s) => model.encodeAudio(s));
        feats.push(...parts);
        const audio = parts.length === 1 ? parts[0]! : concat(parts, 0);
        if (parts.length > 1) feats.push(audio);
        prepared.push({ ids, audio, info: firsts.map((f) => ({ duration: f.length / sr, windows: f.windows.length, window: f.windows[0]! })) });
      }
      const streams = group.map(() => tok.decodeStream({ skipSpecial: true }));
      const texts = group.map(() => '');
      const res = await generateBatch(model, prepared.map((p) => ({ ids: p.ids, audio: p.audio })), {
        ...opts,
        maxBatch,
        onToken: (s, t) => {
          const d = streams[s]!.push(t);
          texts[s] += d;
          if (d) opts.onText?.(g0 + s, d);
        },
      });
      res.forEach((r, s) => {
        const tail = streams[s]!.flush();
        if (tail) opts.onText?.(g0 + s, tail);
        out.push({ ...r, text: texts[s] + tail, promptIds: prepared[s]!.ids, clips: prepared[s]!.info });
      });
    } finally {
      for (const f of feats) f.dispose();
    }
  }
  return out;
}
