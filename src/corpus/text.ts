// Seeded sentence grammars for the synthetic speech. Short sentences (about 3–9 words, so an
// utterance fits in a 4 s clip) with thousands of combinations per language.
import { Rng } from './rng.js';

export type SpeechLang = 'en' | 'de' | 'fr' | 'es' | 'it';

interface Grammar {
  templates: string[];
  words: Record<string, readonly string[]>;
}

const EN: Grammar = {
  templates: [
    'the {adj} {noun} {verbed} {prep} the {place}',
    '{name} {verbed} the {noun} {time}',
    'did you see the {adj} {noun} {time}',
    'please {verb} the {noun} {adv}',
    'there are {num} {nouns} in the {place}',
    '{name} and {name2} {verbed} {prep} the {place}',
    'we should {verb} the {adj} {noun}',
    'my {noun} is {prep} the {place}',
    'the {nouns} are {adj2} {time}',
    '{name} said the {place} was {adj2}',
    'i think the {noun} looks {adj2}',
    'can you {verb} the {noun} {time}',
  ],
  words: {
    adj: ['small', 'old', 'red', 'quiet', 'bright', 'heavy', 'green', 'tall', 'broken', 'little', 'warm', 'empty', 'wooden', 'yellow', 'strange'],
    adj2: ['open', 'closed', 'ready', 'busy', 'clean', 'cold', 'lovely', 'crowded', 'dark', 'wet', 'dry', 'late'],
    noun: ['dog', 'bottle', 'letter', 'window', 'bicycle', 'basket', 'lamp', 'garden', 'teacher', 'boat', 'clock', 'map', 'kettle', 'ladder', 'parcel', 'violin'],
    nouns: ['apples', 'chairs', 'children', 'boxes', 'birds', 'books', 'candles', 'shoes', 'cars', 'flowers', 'keys', 'plates'],
    verbed: ['waited', 'stopped', 'rested', 'vanished', 'appeared', 'landed', 'stayed', 'turned', 'painted', 'carried', 'found', 'moved'],
    verb: ['open', 'close', 'carry', 'clean', 'find', 'paint', 'check', 'bring', 'fix', 'move', 'wrap', 'count'],
    prep: ['near', 'behind', 'inside', 'under', 'beside', 'outside', 'above', 'across'],
    place: ['station', 'kitchen', 'market', 'river', 'library', 'garage', 'bridge', 'hotel', 'office', 'harbour', 'school', 'forest'],
    name: ['Anna', 'Peter', 'Maria', 'James', 'Laura', 'David', 'Sophie', 'Thomas', 'Emma', 'Daniel', 'Clara', 'Oliver'],
    name2: ['Ben', 'Lucy', 'Sam', 'Nina', 'Jack', 'Eva', 'Tom', 'Mia'],
    time: ['this morning', 'last night', 'on Monday', 'at noon', 'every day', 'yesterday', 'after lunch', 'in the evening', 'today', 'last week'],
    adv: ['slowly', 'carefully', 'quickly', 'again', 'now', 'later', 'gently', 'soon'],
    num: ['two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'ten', 'twelve', 'twenty'],
  },
};

const DE: Grammar = {
  templates: ['{name} {verb} {obj} {time}', '{name} und {name2} {verbpl} {obj} {time}', 'heute {verb} {name} {obj}'],
  words: {
    name: ['Anna', 'Peter', 'Lena', 'Jonas', 'Klara', 'Felix', 'Marie', 'Lukas', 'Sophie', 'Paul'],
    name2: ['Tim', 'Lea', 'Max', 'Emma', 'Ben', 'Mia'],
    verb: ['kauft', 'sucht', 'liest', 'malt', 'holt', 'braucht', 'findet', 'repariert', 'trägt', 'zeigt'],
    verbpl: ['kaufen', 'suchen', 'lesen', 'malen', 'holen', 'brauchen', 'finden', 'tragen'],
    obj: ['das Brot', 'den Schlüssel', 'die Zeitung', 'ein Fahrrad', 'den Koffer', 'die Lampe', 'einen Brief', 'das Buch', 'die Blumen', 'den Tisch'],
    time: ['am Morgen', 'jeden Tag', 'am Abend', 'heute', 'morgen früh', 'nach dem Essen', 'am Montag', 'sehr gern'],
  },
};

const FR: Grammar = {
  templates: ['{name} {verb} {obj} {time}', '{name} et {name2} {verbpl} {obj} {time}', "aujourd'hui {name} {verb} {obj}"],
  words: {
    name: ['Marie', 'Paul', 'Camille', 'Louis', 'Julie', 'Hugo', 'Claire', 'Jules', 'Chloé', 'Lucas'],
    name2: ['Léa', 'Tom', 'Emma', 'Noé', 'Manon', 'Adam'],
    verb: ['achète', 'cherche', 'lit', 'prépare', 'regarde', 'porte', 'trouve', 'répare', 'dessine', 'range'],
    verbpl: ['achètent', 'cherchent', 'lisent', 'préparent', 'regardent', 'portent', 'trouvent', 'rangent'],
    obj: ['le pain', 'la lettre', 'un vélo', 'le journal', 'la valise', 'une lampe', 'le livre', 'les fleurs', 'la table', 'le gâteau'],
    time: ['ce matin', 'chaque jour', 'le soir', 'demain', 'à midi', 'après le repas', 'lundi', 'avec plaisir'],
  },
};

const ES: Grammar = {
  templates: ['{name} {verb} {obj} {time}', '{name} y {name2} {verbpl} {obj} {time}', 'hoy {name} {verb} {obj}'],
  words: {
    name: ['María', 'Pablo', 'Lucía', 'Javier', 'Carmen', 'Diego', 'Elena', 'Carlos', 'Sofía', 'Miguel'],
    name2: ['Ana', 'Luis', 'Marta', 'Raúl', 'Inés', 'Pedro'],
    verb: ['compra', 'busca', 'lee', 'prepara', 'mira', 'lleva', 'encuentra', 'arregla', 'dibuja', 'guarda'],
    verbpl: ['compran', 'buscan', 'leen', 'preparan', 'miran', 'llevan', 'encuentran', 'guardan'],
    obj: ['el pan', 'la carta', 'una bicicleta', 'el periódico', 'la maleta', 'una lámpara', 'el libro', 'las flores', 'la mesa', 'el pastel'],
    time: ['por la mañana', 'cada día', 'por la noche', 'mañana', 'al mediodía', 'después de comer', 'el lunes', 'con cuidado'],
  },
};

const IT: Grammar = {
  templates: ['{name} {verb} {obj} {time}', '{name} e {name2} {verbpl} {obj} {time}', 'oggi {name} {verb} {obj}'],
  words: {
    name: ['Giulia', 'Marco', 'Chiara', 'Luca', 'Sara', 'Matteo', 'Elena', 'Paolo', 'Anna', 'Davide'],
    name2: ['Sofia', 'Pietro', 'Marta', 'Enzo', 'Lucia', 'Gino'],
    verb: ['compra', 'cerca', 'legge', 'prepara', 'guarda', 'porta', 'trova', 'ripara', 'disegna', 'pulisce'],
    verbpl: ['comprano', 'cercano', 'leggono', 'preparano', 'guardano', 'portano', 'trovano', 'puliscono'],
    obj: ['il pane', 'la lettera', 'una bicicletta', 'il giornale', 'la valigia', 'una lampada', 'il libro', 'i fiori', 'il tavolo', 'la torta'],
    time: ['la mattina', 'ogni giorno', 'la sera', 'domani', 'a mezzogiorno', 'dopo pranzo', 'lunedì', 'con calma'],
  },
};

export const GRAMMARS: Record<SpeechLang, Grammar> = { en: EN, de: DE, fr: FR, es: ES, it: IT };

/** One sentence in `lang`, drawn from its grammar with `rng`. */
export function makeSentence(rng: Rng, lang: SpeechLang): string {
  const g = GRAMMARS[lang];
  const tpl = rng.pick(g.templates);
  return tpl.replace(/\{(\w+)\}/g, (_m, key: string) => {
    const list = g.words[key];
    if (!list) throw new Error(`grammar ${lang}: unknown slot {${key}}`);
    return rng.pick(list);
  });
}

/** Single words for the varied corpus's short utterances (digits, answers, greetings, commands). */
export const SHORT_WORDS: Record<SpeechLang, readonly string[]> = {
  en: ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'yes', 'no', 'hello', 'okay', 'stop', 'go', 'left', 'right', 'up', 'down', 'thanks', 'sorry', 'wait', 'help'],
  de: ['null', 'eins', 'zwei', 'drei', 'vier', 'fünf', 'ja', 'nein', 'hallo', 'danke', 'halt', 'links', 'rechts'],
  fr: ['zéro', 'un', 'deux', 'trois', 'quatre', 'cinq', 'oui', 'non', 'bonjour', 'merci', 'stop', 'gauche', 'droite'],
  es: ['cero', 'uno', 'dos', 'tres', 'cuatro', 'cinco', 'sí', 'no', 'hola', 'gracias', 'alto', 'izquierda', 'derecha'],
  it: ['zero', 'uno', 'due', 'tre', 'quattro', 'cinque', 'sì', 'no', 'ciao', 'grazie', 'basta', 'sinistra', 'destra'],
};
