/**
 * A child process for test/integration/embedded.test.ts: creates a database, uses it, closes it, and writes what
 * is still keeping its event loop alive to the file named by PROBE_RESULT. It never calls process.exit(): the
 * parent checks that it ends by itself once `db.close()` has run.
 *
 * Run it with stdout and stderr going to files, not pipes, so that the probe's own stdio opens no handles.
 *
 * Environment:
 * - PROBE_CONNECTION: a postgres:// URL of an empty database; unset for the embedded default.
 * - PROBE_RESULT: where to write the JSON report.
 */
import { writeFileSync } from 'node:fs'
import { createDatabase, Droplet, User } from '../../src/index.js'
import { processes } from './processes.js'

/** A process as /proc shows it. */
/** The embedded server listening on `port` (by its `-p` argument) and its child processes. */
function postgresOnPort(port: number): { dataDir: string | undefined; pids: number[] } {
  const all = processes()
  const postmaster = all.find((p) => {
    const i = p.argv.indexOf('-p')
    return i >= 0 && p.argv[i + 1] === String(port) && p.argv.includes('-D')
  })
  if (!postmaster) return { dataDir: undefined, pids: [] }
  const dataDir = postmaster.argv[postmaster.argv.indexOf('-D') + 1]
  return { dataDir, pids: [postmaster.pid, ...all.filter((p) => p.ppid === postmaster.pid).map((p) => p.pid)] }
}

async function main(): Promise<void> {
  const resultFile = process.env.PROBE_RESULT
  if (!resultFile) throw new Error('PROBE_RESULT is not set')
  const connection = process.env.PROBE_CONNECTION
  const report: Record<string, unknown> = { baseline: process.getActiveResourcesInfo() }
  // Written as it grows, so the parent can clean up (and say how far it got) if close() never returns.
  const save = () => writeFileSync(resultFile, JSON.stringify(report))

  let started = Date.now()
  const db = await createDatabase(connection ? { connection, applicationName: 'close-probe' } : {})
  const port = Number(/:(\d+)\//.exec(db.connectionInfo)?.[1])
  const server = db.embedded ? postgresOnPort(port) : { dataDir: undefined, pids: [] }
  Object.assign(report, {
    embedded: db.embedded,
    connectionInfo: db.connectionInfo,
    port,
    dataDir: server.dataDir,
    postgresPids: server.pids,
    ms: { create: Date.now() - started },
  })
  save()

  started = Date.now()
  const { rows } = await db.knex.raw('select 1 + 1 as two')
  const migrated = await db.migrate.latest()
  const seeded = await db.seed.development({ users: 1, dropletsPerUser: 1, passwordHash: { cost: 10 } })
  Object.assign(report, {
    two: (rows as { two: number }[])[0]?.two,
    migrations: migrated.migrations.length,
    usersCreated: seeded.usersCreated,
    users: await db.model(User).query().resultSize(),
    droplets: await db.model(Droplet).query().resultSize(),
    duringUse: process.getActiveResourcesInfo(),
  })
  Object.assign(report.ms as object, { use: Date.now() - started })
  save()

  started = Date.now()
  await db.close()
  report.afterClose = process.getActiveResourcesInfo()
  Object.assign(report.ms as object, { close: Date.now() - started })
  save()
  // The host's own exit code must survive the library (the embedded server's package hooks process exit).
  if (process.env.PROBE_EXIT_CODE) process.exitCode = Number(process.env.PROBE_EXIT_CODE)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
