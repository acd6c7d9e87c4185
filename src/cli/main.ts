import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { isDataError } from '../errors/index.js'
import {
  type CliCommand,
  type CommandOutcome,
  type Io,
  type OptionSpecs,
  type OptionValues,
  UsageError,
} from './command.js'
import { auditCommand } from './commands/audit.js'
import { healthCommand } from './commands/health.js'
import { inventoryLegacyCommand } from './commands/inventory-legacy.js'
import { migrateCommand } from './commands/migrate.js'
import { rotateKeysCommand } from './commands/rotate-keys.js'
import { seedCommand } from './commands/seed.js'

/** Exit codes of `wincloud-data`. */
const EXIT = { ok: 0, failure: 1, usage: 2, checkFailed: 3 } as const

/** The commands, in the order the main help lists them. */
const COMMANDS: readonly CliCommand[] = [
  migrateCommand,
  seedCommand,
  auditCommand,
  inventoryLegacyCommand,
  rotateKeysCommand,
  healthCommand,
]

/** The options every command takes. */
const GLOBAL_OPTIONS = {
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const satisfies OptionSpecs

/**
 * The options of every command together: any command accepts any of them (and ignores those that are not its own),
 * so that a wrong option is always the same usage error. Two commands may share an option only with one meaning.
 */
function allOptions(): OptionSpecs {
  const all: Record<string, OptionSpecs[string]> = { ...GLOBAL_OPTIONS }
  for (const command of COMMANDS) {
    for (const [name, spec] of Object.entries(command.options)) {
      const known = all[name]
      if (known !== undefined && (known.type !== spec.type || known.short !== spec.short)) {
        throw new Error(`the option --${name} of ${command.name} is declared elsewhere with another meaning`)
      }
      all[name] = spec
    }
  }
  return all
}

const OPTIONS = allOptions()

/** The lines under "Commands:": a line per command, or per subcommand. */
function commandLines(): string[] {
  return COMMANDS.flatMap((command) =>
    typeof command.summary === 'string'
      ? [`  ${command.name.padEnd(20)}${command.summary}`]
      : Object.entries(command.summary).map(([sub, text]) => `  ${`${command.name} ${sub}`.padEnd(20)}${text}`),
  )
}

const MAIN_HELP = `Usage: wincloud-data <command> [options]

Commands:
${commandLines().join('\n')}

Options:
  --url <url>         PostgreSQL URL (default: the DATABASE_URL environment variable)

Encryption keys come from WINCLOUD_ENCRYPTION: the JSON of the encryption configuration
({"keys": {"k2026": "<base64>"}, "current": "k2026", "blindIndexKey": "…", "legacyFernetKeys": ["…"]}).

  -h, --help          show help for a command
  -v, --version       print the version

Exit codes: 0 success, 1 the command failed (database unreachable, migration error, …), 2 bad usage,
3 a check failed: the audit log's hash chain is broken (audit verify), or the database is unhealthy or could not be
checked at all (health).`

/** The help of the command named `topic`; the main help for any other topic. */
function helpText(topic: string | undefined): string {
  return COMMANDS.find((command) => command.name === topic)?.help ?? MAIN_HELP
}

/** The version in the package's own package.json, found from the source and from the build alike. */
function packageVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === '@wincloud/data' && pkg.version) return pkg.version
    } catch {
      // not here: keep walking up
    }
  }
  return 'unknown'
}

/** Runs `command` after checking its subcommand; a usage error or a failure is thrown. */
async function runCommand(
  command: CliCommand,
  sub: string | undefined,
  values: OptionValues<OptionSpecs>,
  url: string | undefined,
  io: Io,
): Promise<CommandOutcome> {
  if (typeof command.summary !== 'string') {
    const subs = Object.keys(command.summary)
    if (sub === undefined || !subs.includes(sub)) {
      throw new UsageError(`${command.name} needs one of ${subs.join(', ')}\n\n${command.help}`)
    }
    return command.run({ sub, values, url, io })
  }
  return command.run({ sub: undefined, values, url, io })
}

/**
 * Runs the `wincloud-data` command line with `argv` (without node and the script) and returns the exit code.
 *
 * @internal
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  let parsed: { values: OptionValues<OptionSpecs>; positionals: string[] }
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, options: OPTIONS })
  } catch (error) {
    io.err(`wincloud-data: ${(error as Error).message}\n\n${MAIN_HELP}`)
    return EXIT.usage
  }
  const { values, positionals } = parsed
  const global = values as OptionValues<typeof GLOBAL_OPTIONS>
  const [command, sub] = positionals
  if (global.version) {
    io.out(packageVersion())
    return EXIT.ok
  }
  if (global.help || command === undefined || command === 'help') {
    io.out(helpText(command === 'help' ? sub : command))
    return command === undefined && !global.help ? EXIT.usage : EXIT.ok
  }
  const url = global.url ?? io.env.DATABASE_URL
  try {
    const found = COMMANDS.find((candidate) => candidate.name === command)
    if (found === undefined) throw new UsageError(`unknown command: ${command}\n\n${MAIN_HELP}`)
    return EXIT[await runCommand(found, sub, values, url, io)]
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`wincloud-data: ${error.message}`)
      return EXIT.usage
    }
    io.err(`wincloud-data: ${isDataError(error) ? `${error.name}: ${error.message}` : String(error)}`)
    return EXIT.failure
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
    ...(process.stderr.isTTY
      ? {
          status: (line: string) => {
            process.stderr.clearLine(0)
            process.stderr.cursorTo(0)
            process.stderr.write(line)
            if (line === '') process.stderr.cursorTo(0)
          },
        }
      : {}),
  }).then(
    (code) => {
      process.exitCode = code
    },
    (error: unknown) => {
      process.stderr.write(`wincloud-data: ${String(error)}\n`)
      process.exitCode = EXIT.failure
    },
  )
}
