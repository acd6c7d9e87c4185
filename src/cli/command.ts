/**
 * The shape of one `wincloud-data` command, and the helpers the commands share. `main.ts` holds the table of
 * commands, parses the arguments, prints the help and turns what a command returns or throws into an exit code.
 */

/**
 * Where a command writes, and the environment it reads.
 *
 * @internal
 */
export interface Io {
  out(line: string): void
  err(line: string): void
  env: NodeJS.ProcessEnv
  /** Redraws one status line in place (a terminal on stderr); absent when stderr is not a terminal. */
  status?: (line: string) => void
}

/**
 * The options a command declares, in the form `node:util`'s `parseArgs` takes them.
 *
 * @internal
 */
export type OptionSpecs = Readonly<Record<string, { readonly type: 'string' | 'boolean'; readonly short?: string }>>

/**
 * The parsed values of `O`: a string for a string option, `true` for a flag, absent when not given.
 *
 * @internal
 */
export type OptionValues<O extends OptionSpecs> = {
  readonly [K in keyof O]?: O[K]['type'] extends 'boolean'
    ? boolean
    : O[K]['type'] extends 'string'
      ? string
      : string | boolean
}

/**
 * How a command that did not throw ended: `checkFailed` when what it checked is broken (the audit chain, the
 * health of the database). `main.ts` maps it to the exit code.
 *
 * @internal
 */
export type CommandOutcome = 'ok' | 'checkFailed'

/**
 * What a command's `run` is given.
 *
 * @internal
 */
export interface CommandContext<O extends OptionSpecs, S extends string> {
  /** The subcommand, already checked to be one of the command's; undefined for a command without any. */
  readonly sub: S | undefined
  readonly values: OptionValues<O>
  /** `--url`, or else the DATABASE_URL environment variable. */
  readonly url: string | undefined
  readonly io: Io
}

/**
 * One record of the table of commands.
 *
 * @internal
 */
export interface CliCommand<O extends OptionSpecs = OptionSpecs, S extends string = string> {
  /** The first word on the command line. */
  readonly name: string
  /**
   * Its line under "Commands:" in the main help; for a command with subcommands, a line per subcommand (the
   * subcommands are the keys, in order).
   */
  readonly summary: string | { readonly [sub in S]: string }
  /** The text of `wincloud-data help <name>` and `wincloud-data <name> --help`. */
  readonly help: string
  /** The options it reads, besides the global `--url`. */
  readonly options: O
  run(context: CommandContext<O, S>): Promise<CommandOutcome>
}

/**
 * Types a command record: its option values are typed from its `options`, its subcommands from its `summary`.
 *
 * @internal
 */
export function defineCommand<const O extends OptionSpecs, const S extends string = never>(
  command: CliCommand<O, S>,
): CliCommand<O, S> {
  return command
}

/**
 * Bad usage: printed after `wincloud-data: `, exit code 2.
 *
 * @internal
 */
export class UsageError extends Error {}

/**
 * The whole number given to `--<name>`, or undefined when the option was not given.
 *
 * @internal
 */
export function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number`)
  return Number(value)
}

/**
 * Shows a progress line: redrawn in place on a terminal, else a line on stderr.
 *
 * @internal
 */
export function showProgress(io: Io, line: string): void {
  if (io.status !== undefined) io.status(line)
  else io.err(line)
}
