import { startTopology } from '../../scripts/topology.js'
import { needs } from './tools.js'

/**
 * The PgBouncer run of the integration suite: a primary with PgBouncer (transaction mode) in front of it. Test
 * files create their databases on the primary directly and connect the library through PgBouncer.
 */
export default async function setup(project: {
  provide(key: 'adminDatabaseUrl' | 'pgbouncerUrl', value: string): void
}): Promise<() => Promise<void>> {
  // vitest.config.mts leaves this run out when a tool is missing, except in CI, where this throws, naming the package.
  if (!needs(['postgresql-15', 'pgbouncer'], 'the PgBouncer run of the integration suite')) {
    throw new Error('the PgBouncer run needs PostgreSQL 15 and PgBouncer')
  }
  const topology = await startTopology({ replica: false, redis: false })
  project.provide('adminDatabaseUrl', topology.primaryUrl)
  project.provide('pgbouncerUrl', topology.pgbouncerUrl!)
  return () => topology.stop()
}
