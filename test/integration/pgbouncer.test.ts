import { describe, expect, inject, it } from 'vitest'
import { Droplet, User } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

describe('through PgBouncer in transaction mode', () => {
  it('really goes through PgBouncer, and scoped work runs on whichever server connection it gets', async () => {
    const via = new URL(inject('pgbouncerUrl'))
    const { db, cleanup } = await openTestDatabase({ rls: true, pool: { max: 4 } })
    try {
      // The library's connection is PgBouncer's port; the server behind it listens on another.
      expect(db.connectionInfo).toContain(`:${via.port}/`)
      const { rows } = await db.knex.raw<{ rows: { port: number }[] }>('select inet_server_port() as port')
      expect(String(rows[0]!.port)).not.toBe(via.port)
      // Many scopes at once, each in its own transactions on whichever server connection PgBouncer hands out: with
      // rls the actor settings must be transaction-local, or a count would see another actor's rows. (A named
      // prepared statement would fail here too, as "does not exist" on another server connection; the suites run
      // through PgBouncer are the evidence for that, not a query of pg_prepared_statements, which sees only the
      // server connection that answers it.)
      const users = await Promise.all(
        [0, 1, 2, 3, 4, 5].map((i) =>
          db
            .system('t')
            .repo(User)
            .create({ email: `pgb${i}@example.com`, username: `pgb${i}`, passwordHash: 'x' }),
        ),
      )
      await Promise.all(
        users.map((user, i) =>
          db
            .scope(user)
            .repo(Droplet)
            .bulkCreate(Array.from({ length: 3 + i }, (_, n) => ({ name: `d${i}-${n}`, region: 'nyc3', size: 's' }))),
        ),
      )
      const counts = await Promise.all(
        Array.from({ length: 60 }, (_, n) =>
          db
            .scope(users[n % users.length]!)
            .repo(Droplet)
            .count(),
        ),
      )
      expect(counts).toEqual(Array.from({ length: 60 }, (_, n) => 3 + (n % users.length)))
    } finally {
      await cleanup()
    }
  })
})
