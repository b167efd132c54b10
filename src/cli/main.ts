// The ardgpu command line: parses flags with cac and calls the library. Errors: one line on
// stderr, exit 1 (2 for usage errors); --debug adds the stack.
import { cac } from 'cac';
import { ArdError, UsageError } from '../util/errors.js';
import { registerCommands } from './commands.js';

const argv = process.argv;
const debug = argv.includes('--debug');

function fail(e: unknown): never {
  if (e instanceof ArdError) {
    process.stderr.write(`error: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    process.exit(e.exitCode);
  }
  const err = e as Error;
  const msg = String(err?.message ?? e).split('\n')[0];
  if (/Unknown option|missing required arg|Unused args|value is missing/i.test(msg)) {
    process.stderr.write(`error: ${msg} (see ardgpu --help)\n`);
    process.exit(2);
  }
  process.stderr.write(`error: ${msg}${debug ? '' : ' (run with --debug for the stack)'}\n`);
  if (debug && err?.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
}

process.on('unhandledRejection', fail);

async function main(): Promise<void> {
  const cli = cac('ardgpu');
  registerCommands(cli);
  cli.help();
  cli.version('0.1.0');
  const parsed = cli.parse(argv, { run: false });
  if (!cli.matchedCommand) {
    if (parsed.options.help || parsed.options.version) return;
    if (parsed.args.length) throw new UsageError(`unknown command '${parsed.args[0]}' (see ardgpu --help)`);
    cli.outputHelp();
    return;
  }
  await cli.runMatchedCommand();
}

main().then(
  () => {
    // Dawn keeps the event loop alive; leave once the command is done
    process.exit(process.exitCode ?? 0);
  },
  fail,
);
