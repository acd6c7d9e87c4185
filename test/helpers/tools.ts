import { spawnSync } from 'node:child_process'
import { missingAutoFailover } from '../../scripts/auto-failover.js'
import { missingPrograms } from '../../scripts/topology.js'

/**
 * The optional programs some tests use beyond Node and the throwaway PostgreSQL, how each is found, and the Debian
 * packages that provide it. A suite (or a test) that needs one asks `needs(...)`:
 *
 * - the tool is there: the suite runs as always;
 * - it is missing, locally: the suite is skipped, with one console warning naming the tool and the package;
 * - it is missing in CI (`CI` set): `needs` throws, naming the package, and the run fails.
 *
 * The idiom, for a suite and for one test:
 *
 * ```ts
 * const suite = needs('redis', 'the cache tests') ? describe : describe.skip
 * suite('the Redis read cache', () => { ... })
 *
 * it.skipIf(!needs('script', 'the prompt on a terminal'))('asks on a terminal', async () => { ... })
 * ```
 *
 * This file imports nothing from vitest, so vitest.config.mts uses it too (to leave out the PgBouncer run).
 *
 * The server programs are looked for where the topology scripts look (`missingPrograms` in scripts/topology.ts,
 * `missingAutoFailover` in scripts/auto-failover.ts), which honour `WINCLOUD_PG_BIN`, `WINCLOUD_PGBOUNCER`,
 * `WINCLOUD_REDIS_SERVER` and `WINCLOUD_PG_AUTOCTL`.
 *
 * For testing this file and the skips: `WINCLOUD_TEST_HIDE_TOOLS` is a comma-separated list of tool names (the keys
 * of `TOOLS`, e.g. `WINCLOUD_TEST_HIDE_TOOLS=prometheus-client,redis`) that are reported missing even when they are
 * installed. Nothing is uninstalled: it only shows what a machine without them does.
 */

/** An optional tool: what it enables, which Debian packages provide it, and how to tell what of it is missing. */
export interface Tool {
  /** Its name in messages. */
  readonly title: string
  /** What the tests do with it. */
  readonly enables: string
  /** The Debian packages that provide it (`apt-get install` them). */
  readonly debian: readonly string[]
  /** What is missing (files, modules), or an empty list when it is there. */
  readonly detect: () => readonly string[]
}

/** The interpreters tried, in order: Debian's, then the first on PATH. */
const PYTHONS = ['/usr/bin/python3', 'python3']

/** The modules each Python tool needs. */
const PYTHON_MODULES = {
  'python-backend': ['cryptography', 'passlib', 'bcrypt'],
  'prometheus-client': ['prometheus_client'],
} as const

type PythonTool = keyof typeof PYTHON_MODULES

const pythons = new Map<PythonTool, string | undefined>()

/** The first python3 that imports all of the tool's modules, or undefined. */
function findPython(tool: PythonTool): string | undefined {
  if (!pythons.has(tool)) {
    const code = PYTHON_MODULES[tool].map((m) => `import ${m}`).join('; ')
    pythons.set(
      tool,
      PYTHONS.find((candidate) => spawnSync(candidate, ['-c', code], { stdio: 'ignore' }).status === 0),
    )
  }
  return pythons.get(tool)
}

function pythonMissing(tool: PythonTool): string[] {
  if (findPython(tool) !== undefined) return []
  return [`no python3 (${PYTHONS.join(', ')}) imports ${PYTHON_MODULES[tool].join(', ')}`]
}

/** The PostgreSQL 15 server programs every topology needs: initdb, pg_ctl, postgres, pg_basebackup. */
const postgresMissing = () => missingPrograms({ pgbouncer: false, redis: false })

/** What `missingPrograms` adds for one part (PgBouncer or Redis) beyond the PostgreSQL programs. */
function partMissing(part: 'pgbouncer' | 'redis'): string[] {
  const base = missingPrograms({ replica: false, pgbouncer: false, redis: false })
  return missingPrograms({ replica: false, pgbouncer: part === 'pgbouncer', redis: part === 'redis' }).filter(
    (file) => !base.includes(file),
  )
}

/** The registry. */
export const TOOLS = {
  'python-backend': {
    title: 'python3 with cryptography, passlib and bcrypt',
    enables: 'Fernet tokens and password hashes checked against the Python backend',
    debian: ['python3-cryptography', 'python3-passlib', 'python3-bcrypt'],
    detect: () => pythonMissing('python-backend'),
  },
  'prometheus-client': {
    title: 'python3 with prometheus_client',
    enables: "db.metrics() output parsed by the Prometheus client's text parser",
    debian: ['python3-prometheus-client'],
    detect: () => pythonMissing('prometheus-client'),
  },
  'postgresql-15': {
    title: 'the PostgreSQL 15 server programs',
    enables: 'servers of their own: replicas, failover, restarts, pg_hba.conf, several app instances',
    debian: ['postgresql-15'],
    detect: postgresMissing,
  },
  pgbouncer: {
    title: 'PgBouncer',
    enables: 'the second run of the integration suite through PgBouncer (transaction mode)',
    debian: ['pgbouncer'],
    detect: () => partMissing('pgbouncer'),
  },
  redis: {
    title: 'Redis',
    enables: 'the Redis read cache tests',
    debian: ['redis-server'],
    detect: () => partMissing('redis'),
  },
  'pg-auto-failover': {
    title: 'pg_auto_failover',
    enables: 'failover driven by a pg_auto_failover monitor',
    debian: ['postgresql-15-auto-failover'],
    detect: missingAutoFailover,
  },
  script: {
    title: '`script` (util-linux), which runs a command on a pseudo-terminal',
    enables: "the CLI's confirmation prompt on a terminal",
    debian: ['bsdutils'],
    detect: () => (spawnSync('script', ['--version']).status === 0 ? [] : ['script not found on PATH']),
  },
} as const satisfies Record<string, Tool>

export type ToolName = keyof typeof TOOLS

const HIDE_VARIABLE = 'WINCLOUD_TEST_HIDE_TOOLS'
const WARNED = Symbol.for('wincloud.test.tools.warned')

/** The tools `WINCLOUD_TEST_HIDE_TOOLS` hides; an unknown name is an error (a typo would hide nothing). */
function hidden(): ReadonlySet<ToolName> {
  const names = (process.env[HIDE_VARIABLE] ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '')
  for (const name of names) {
    if (!(name in TOOLS)) throw new Error(`${HIDE_VARIABLE}: no tool ${name} (known: ${Object.keys(TOOLS).join(', ')})`)
  }
  return new Set(names as ToolName[])
}

const detected = new Map<ToolName, readonly string[]>()

/** What of the tool is missing (empty when it is there); honours `WINCLOUD_TEST_HIDE_TOOLS`. Checked once. */
export function missingOf(name: ToolName): readonly string[] {
  if (hidden().has(name)) return [`hidden by ${HIDE_VARIABLE}`]
  let missing = detected.get(name)
  if (missing === undefined) {
    missing = TOOLS[name].detect()
    detected.set(name, missing)
  }
  return missing
}

/**
 * The python3 that has the tool's modules, or undefined (also when `WINCLOUD_TEST_HIDE_TOOLS` hides the tool).
 * Decides nothing: a suite that runs Python asks `needs` first.
 */
export function pythonFor(name: PythonTool): string | undefined {
  return missingOf(name).length === 0 ? findPython(name) : undefined
}

/** The warnings given, kept on the process: the configuration is loaded more than once, each time afresh. */
const warned = ((globalThis as { [WARNED]?: Set<string> })[WARNED] ??= new Set<string>())

/**
 * Whether the tools are all there. When one is missing: locally, warns once (naming the tool and the Debian
 * packages to install) and returns false, so the caller skips; in CI (`CI` set), throws, naming the packages.
 * `what` names the tests, for the message.
 */
export function needs(tools: ToolName | readonly ToolName[], what = 'some tests'): boolean {
  const names: readonly ToolName[] = typeof tools === 'string' ? [tools] : tools
  const absent = names.filter((name) => missingOf(name).length > 0)
  if (absent.length === 0) return true
  const details = absent.map((name) => `${TOOLS[name].title} (${missingOf(name).join('; ')})`).join(', ')
  const install = `apt-get install ${absent.flatMap((name) => TOOLS[name].debian).join(' ')}`
  if (process.env.CI) throw new Error(`${what} cannot be skipped in CI: missing ${details}. Install: ${install}`)
  const message = `Skipping ${what}: missing ${details}. On Debian: sudo ${install}`
  if (!warned.has(message)) {
    warned.add(message)
    console.warn(message)
  }
  return false
}
