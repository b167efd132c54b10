// A folder per class: DIR/<class>/**/*.{wav,flac,ogg,oga,opus,mp3}, each clip labelled with its class folder's name. Chosen
// when DIR has no audio of its own but its subfolders do.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAudioFile, listAudio } from '../../audio/wav.js';
import type { RowsRead } from './records.js';

function classFolders(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => !e.name.startsWith('.') && (e.isDirectory() || (e.isSymbolicLink() && fs.statSync(path.join(dir, e.name), { throwIfNoEntry: false })?.isDirectory())))
    .map((e) => e.name)
    .sort();
}

/** True when DIR holds no audio file itself and at least one subfolder holds audio. */
export function isClassFolders(dir: string): boolean {
  const top = fs.readdirSync(dir, { withFileTypes: true });
  if (top.some((e) => !e.isDirectory() && !e.name.startsWith('.') && isAudioFile(e.name))) return false;
  return classFolders(dir).some((c) => listAudio(path.join(dir, c)).length > 0);
}

export function readClassFolders(dir: string): RowsRead {
  const base = path.resolve(dir);
  const rows = classFolders(dir).flatMap((c) =>
    listAudio(path.join(base, c)).map((f) => ({ where: f, file: f, base, labels: [c] })),
  );
  return { rows, problems: [] };
}
