import { existsSync, readFileSync } from 'node:fs';

/**
 * The lines a hook has finished writing to a log it appends to (`echo … >> log`). The shell creates
 * the file before `echo` writes, so a reader can see it empty or half-written: only lines that end
 * in a newline count.
 */
export function writtenLines(file: string): string[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').slice(0, -1);
}
