// Public surface of the synthetic probe corpus.
export { makeCorpus, renderClip } from './make-corpus.js';
export type { MakeCorpusOptions, MakeCorpusProgress, MakeCorpusResult, CorpusInfo, SplitCounts } from './make-corpus.js';
export { readManifest, validateEntry, CONCEPT_LABELS, MANIFEST_FILE, CORPUS_FILE } from './manifest.js';
export type { ManifestEntry } from './manifest.js';
export {
  planCorpus, splitVoices, sentenceSplit, voiceVariant, voiceSpeaker, CONCEPTS, SPEECH_CONCEPTS, SPLITS, DEFAULT_SEED, DEFAULT_SIZE, MIN_SIZE,
  MIN_DURATION, MAX_DURATION, CORPUS_VERSION,
} from './plan.js';
export type { ClipPlan, CorpusPlan, Concept, Split, AugmentPlan, SpeechPlan, SoundLayer } from './plan.js';
export { GENERATORS, SOUND_CONCEPTS, synthesize } from './synth.js';
export type { Generator, SoundConcept } from './synth.js';
export { Rng, hash32, seedToU32 } from './rng.js';
export { resample } from '../audio/resample.js';
export { SR as CORPUS_SAMPLE_RATE } from './dsp.js';
