import { missingPrograms, startTopology } from '../../scripts/topology.js'

/**
 * The PgBouncer run of the integration suite: a primary with PgBouncer (transaction mode) in front of it. Test
 * files create their databases on the primary directly and connect the library through PgBouncer.
 */
export default async function setup(project: {
  provide(key: 'adminDatabaseUrl' | 'pgbouncerUrl', value: string): void
}): Promise<() => Promise<void>> {
  const missing = missingPrograms({ replica: false, redis: false })
  if (missing.length > 0) throw new Error(`the PgBouncer run needs ${missing.join(', ')}`)
  const topology = await startTopology({ replica: false, redis: false })
  project.provide('adminDatabaseUrl', topology.primaryUrl)
  project.provide('pgbouncerUrl', topology.pgbouncerUrl!)
  return () => topology.stop()
}
