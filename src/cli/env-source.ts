// An error names the flag (`--drain: "xyz" is not a duration`), but an operator who set
// MESH_SDS_DRAIN in a manifest never typed --drain: the error says which variable gave the value.
import type { Command, Option } from 'commander';

/** Commands from `root` down, each with the options it declares. */
function* commandsOf(root: Command): Generator<Command> {
  yield root;
  for (const sub of root.commands) yield* commandsOf(sub);
}

/**
 * `message` with, for each flag it names whose value came from its environment variable, a note
 * naming that variable. Only commands that parsed their options have value sources, so an unrun
 * command's flags are never named.
 */
export function withEnvSources(message: string, root: Command): string {
  const notes: string[] = [];
  for (const cmd of commandsOf(root)) {
    for (const opt of cmd.options as readonly Option[]) {
      if (!opt.long || !opt.envVar || cmd.getOptionValueSource(opt.attributeName()) !== 'env') continue;
      if (!new RegExp(`${opt.long}(?![\\w-])`).test(message)) continue;
      notes.push(`${opt.long} was set by ${opt.envVar} in the environment`);
    }
  }
  return notes.length === 0 ? message : `${message} (${notes.join('; ')})`;
}
