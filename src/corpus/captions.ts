// Short natural captions built from a clip's labels. Several phrasings per concept; each keeps the
// label's key word (or an obvious form of it: woman/man for female/male speech) recognisable.
import { Rng } from './rng.js';

export const PHRASES: Record<string, readonly string[]> = {
  'female speech': ['a woman speaking', 'a woman talking', 'a female voice speaking', 'female speech', 'a woman saying a sentence', 'a female speaker talking'],
  'male speech': ['a man speaking', 'a man talking', 'a male voice speaking', 'male speech', 'a man saying a sentence', 'a male speaker talking'],
  'low tone': ['a low tone', 'a low-pitched tone', 'a steady low tone', 'a deep low tone'],
  'mid tone': ['a mid tone', 'a mid-pitched tone', 'a steady mid-range tone', 'a plain mid tone'],
  'high tone': ['a high tone', 'a high-pitched tone', 'a steady high tone', 'a piercing high tone'],
  'square buzz': ['a square buzz', 'a square-wave buzz', 'a harsh square buzz', 'a buzzing square wave'],
  'sawtooth buzz': ['a sawtooth buzz', 'a sawtooth-wave buzz', 'a bright sawtooth buzz', 'a buzzing sawtooth wave'],
  chord: ['a chord', 'a sustained chord', 'a musical chord', 'a chord of several notes'],
  'rising chirp': ['a rising chirp', 'an upward chirp', 'a chirp rising in pitch', 'a rising sweep'],
  'falling chirp': ['a falling chirp', 'a downward chirp', 'a chirp falling in pitch', 'a falling sweep'],
  'white noise': ['white noise', 'a hiss of white noise', 'steady white noise', 'static-like white noise'],
  'pink noise': ['pink noise', 'soft pink noise', 'steady pink noise', 'a rush of pink noise'],
  'brown noise': ['brown noise', 'deep brown noise', 'a low rumble of brown noise', 'steady brown noise'],
  rain: ['rain', 'rain falling', 'the sound of rain', 'steady rain', 'rain pattering'],
  ticking: ['ticking', 'steady ticking', 'a clock ticking', 'regular ticking'],
  alarm: ['an alarm', 'an alarm beeping', 'a beeping alarm', 'a repeating alarm'],
  knocking: ['knocking', 'knocking on a door', 'someone knocking', 'a series of knocking sounds'],
  silence: ['silence', 'near silence', 'almost complete silence', 'quiet silence'],
  siren: ['a siren', 'a wailing siren', 'a siren rising and falling', 'a distant siren'],
  bell: ['a bell', 'a bell ringing', 'a ringing bell', 'a bell being struck'],
  clapping: ['clapping', 'hands clapping', 'people clapping', 'someone clapping'],
  'engine hum': ['an engine hum', 'a humming engine', 'the low hum of an engine', 'an idling engine hum'],
  'water drip': ['water dripping', 'a water drip', 'drops of water dripping', 'a dripping water tap'],
  whistle: ['a whistle', 'someone whistling', 'a whistled tune', 'a breathy whistle'],
  heartbeat: ['a heartbeat', 'a beating heart', 'a steady heartbeat', 'the thump of a heartbeat'],
  birdsong: ['birdsong', 'a bird singing', 'birds chirping in song', 'a songbird singing'],
};

const TWO = ['{a} over {b}', '{a} with {b}', '{a} with {b} in the background', '{a} and {b}', '{a} mixed with {b}'];
const THREE = ['{a} over {b} and {c}', '{a} with {b} and {c}', '{a}, {b} and {c} together'];

/** Caption for labels in foreground-first order. */
export function makeCaption(rng: Rng, labels: readonly string[]): string {
  const np = labels.map((l) => {
    const list = PHRASES[l];
    if (!list) throw new Error(`makeCaption: no phrases for label '${l}'`);
    return rng.pick(list);
  });
  if (np.length === 1) return np[0]!;
  const tpl = rng.pick(np.length === 2 ? TWO : THREE);
  return tpl.replace('{a}', np[0]!).replace('{b}', np[1]!).replace('{c}', np[2] ?? '');
}
