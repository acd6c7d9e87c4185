import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTopology, type Topology } from '../../scripts/topology.js'
import { createDatabase, hashPassword, User } from '../../src/index.js'
import { fastHash } from '../helpers/database.js'
import { packedExample, type PackedExample } from '../helpers/packed.js'
import { needs } from '../helpers/tools.js'

/*
 * Two processes of the Express example behind one imaginary load balancer, on a real primary and a real streaming
 * replica (loopback). Each runs as express-app.test.ts runs one (installed from the packed tarball by
 * test/helpers/packed.ts, then `node --import tsx src/server.ts`), with the same APP_TOKEN_SECRET and CURSOR_SECRET,
 * DATABASE_URL on the primary and REPLICA_URL on the replica. With WAL replay paused, a row written since exists only
 * on the primary: a 404 on instance B proves B read from the replica, a 200 that it read from a server that has the
 * write.
 */
const suite = needs('postgresql-15', 'the Express instances test') ? describe : describe.skip

const secrets = {
  APP_TOKEN_SECRET: 'test-secret-of-the-express-example-0123456789',
  CURSOR_SECRET: randomBytes(32).toString('base64'),
}
const password = { alice: 'alice-pw-1', bob: 'bob-pw-2' }
type Name = keyof typeof password

/** One process of the example. */
interface Instance {
  readonly child: ChildProcess
  base: string
  output: string
}

interface Reply {
  status: number
  headers: Headers
  body: { [field: string]: unknown; id: string; name: string; code: string; token: string }
}

suite('the Express example on two instances', () => {
  let topology: Topology | undefined
  let example: PackedExample | undefined
  const instances: Instance[] = []
  let a: Instance
  let b: Instance
  const tokens: Partial<Record<Name, string>> = {}

  async function sql(url: string, text: string): Promise<void> {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query(text)
    } finally {
      await client.end()
    }
  }

  /** Starts a process of the example and resolves once it listens. */
  async function start(env: Record<string, string>): Promise<Instance> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: example!.dir,
      env: { ...process.env, PORT: '0', NODE_ENV: 'production', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const instance: Instance = { child, base: '', output: '' }
    instances.push(instance)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the example did not start:\n${instance.output}`)), 30_000)
      const read = (chunk: Buffer): void => {
        instance.output += chunk.toString()
        const port = /listening on http:\/\/localhost:(\d+)/.exec(instance.output)?.[1]
        if (port !== undefined && instance.base === '') {
          clearTimeout(timer)
          instance.base = `http://127.0.0.1:${port}`
          resolve(instance)
        }
      }
      child.stdout.on('data', read)
      child.stderr.on('data', read)
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the example exited with ${code}:\n${instance.output}`))
      })
    })
  }

  /** One request to an instance: `as` sends that user's login token, `consistency` an X-Consistency-Token. */
  async function call(
    instance: Instance,
    method: string,
    path: string,
    options: { as?: Name; body?: unknown; consistency?: string } = {},
  ): Promise<Reply> {
    const headers: Record<string, string> = {}
    const token = options.as === undefined ? undefined : tokens[options.as]
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    if (options.consistency !== undefined) headers['x-consistency-token'] = options.consistency
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    const response = await fetch(`${instance.base}${path}`, { method, headers, body })
    const text = await response.text()
    const json = (response.headers.get('content-type') ?? '').startsWith('application/json')
    return { status: response.status, headers: response.headers, body: (json ? JSON.parse(text) : {}) as Reply['body'] }
  }

  /** Waits until the instance's replica monitor reports the replica `ok` from a check made after `since`. */
  async function replicaOk(instance: Instance, since: number, withinMs = 10_000): Promise<void> {
    const deadline = Date.now() + withinMs
    for (;;) {
      const { body } = await call(instance, 'GET', '/health/ready')
      const [replica] = body.replicas as { state: string; checkedAt: string | null }[]
      if (replica?.state === 'ok' && Date.parse(replica.checkedAt ?? '') > since) return
      if (Date.now() > deadline)
        throw new Error(`the replica is not ok within ${withinMs} ms: ${JSON.stringify(replica)}`)
      await sleep(25)
    }
  }

  /** The replica has replayed everything written so far, and both instances' monitors have seen it since. */
  async function caughtUp(): Promise<void> {
    await topology!.waitForReplica()
    const since = Date.now()
    await Promise.all([replicaOk(a, since), replicaOk(b, since)])
  }

  async function login(instance: Instance, name: Name): Promise<void> {
    const reply = await call(instance, 'POST', '/auth/login', { body: { login: name, password: password[name] } })
    expect(reply.status).toBe(200)
    tokens[name] = reply.body.token
  }

  beforeAll(async () => {
    // Packing and installing the example take a while (seconds of CPU): the servers start meanwhile.
    const [installed, started] = await Promise.allSettled([
      packedExample('express-app'),
      startTopology({ pgbouncer: false, redis: false }),
    ])
    // Whatever started is kept for afterAll to stop before the first failure is thrown (and assigned again below,
    // unconditionally, for the type checker).
    example = installed.status === 'fulfilled' ? installed.value : undefined
    topology = started.status === 'fulfilled' ? started.value : undefined
    if (installed.status === 'rejected') throw installed.reason
    if (started.status === 'rejected') throw started.reason
    topology = started.value
    await sql(topology.primaryUrl, 'create database app')
    const primaryUrl = topology.urlFor(topology.primaryUrl, 'app')
    const replicaUrl = topology.urlFor(topology.replicaUrl!, 'app')
    const db = await createDatabase({ connection: primaryUrl })
    try {
      await db.migrate.latest()
      const setup = db.system('express instances test: accounts')
      for (const name of ['alice', 'bob'] as const) {
        await setup.repo(User).create({
          email: `${name}@example.com`,
          username: name,
          passwordHash: await hashPassword(password[name], fastHash),
        })
      }
    } finally {
      await db.close()
    }
    const env = { ...secrets, DATABASE_URL: primaryUrl, REPLICA_URL: replicaUrl }
    ;[a, b] = await Promise.all([start(env), start(env)])
  }, 300_000)

  afterAll(async () => {
    for (const { child } of instances) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
    }
    await topology?.stop()
    await example?.cleanup()
  })

  it('reads what was written on another instance with its X-Consistency-Token, and refuses a forged one', async () => {
    // Bob writes first: his token is another user's for alice's requests below.
    await login(b, 'bob')
    const bobs = await call(a, 'POST', '/droplets', { as: 'bob', body: { name: 'bob-1', region: 'nyc3', size: 's' } })
    expect(bobs.status).toBe(201)
    const bobToken = bobs.headers.get('x-consistency-token')
    expect(bobToken).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)

    // A replica serves reads while it is no further behind than maxReplicaLagMs (the example keeps the default, 5 s),
    // counted from the last commit it replayed. Alice's login is that commit: the paused stretch below takes a
    // fraction of it.
    await login(a, 'alice')
    await caughtUp()
    await topology!.pauseReplay()
    try {
      const created = await call(a, 'POST', '/droplets', {
        as: 'alice',
        body: { name: 'web-1', region: 'nyc3', size: 's' },
      })
      expect(created.status).toBe(201)
      const token = created.headers.get('x-consistency-token')
      expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
      const path = `/droplets/${created.body.id}`

      // Instance B never saw alice write. With her token it reads a server that has the write (the primary)…
      const withToken = await call(b, 'GET', path, { as: 'alice', consistency: token! })
      expect(withToken.status).toBe(200)
      expect(withToken.body.name).toBe('web-1')
      expect(withToken.headers.get('x-consistency-token')).toBeNull() // reads hand out no token
      // …without it, the paused replica, which has not replayed the write.
      expect((await call(b, 'GET', path, { as: 'alice' })).status).toBe(404)

      // Every write hands out a token of its own, and the latest covers the latest write.
      const patched = await call(a, 'PATCH', path, { as: 'alice', body: { name: 'web-1b' } })
      expect(patched.status).toBe(200)
      const patchToken = patched.headers.get('x-consistency-token')
      expect(patchToken).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
      expect((await call(b, 'GET', path, { as: 'alice', consistency: patchToken! })).body.name).toBe('web-1b')
      const bulk = await call(a, 'POST', '/droplets/bulk-status', {
        as: 'alice',
        body: { ids: [created.body.id], status: 'stopped' },
      })
      expect(bulk.status).toBe(200)
      const bulkToken = bulk.headers.get('x-consistency-token')
      expect(bulkToken).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
      expect((await call(b, 'GET', path, { as: 'alice', consistency: bulkToken! })).body.status).toBe('stopped')
      expect((await call(b, 'GET', path, { as: 'alice' })).status).toBe(404)
      // A write that fails hands out none.
      const refused = await call(a, 'PATCH', path, { as: 'alice', body: { status: 'sleeping' } })
      expect(refused.status).toBe(400)
      expect(refused.headers.get('x-consistency-token')).toBeNull()

      // Altered by one character, or another user's: the app's answer to the library's InvalidCursorError.
      const altered = `${token!.slice(0, 3)}${token![3] === 'A' ? 'B' : 'A'}${token!.slice(4)}`
      for (const forged of [altered, bobToken!]) {
        for (const instance of [a, b]) {
          const reply = await call(instance, 'GET', path, { as: 'alice', consistency: forged })
          expect(reply.status).toBe(400)
          expect(reply.body).toMatchObject({ name: 'InvalidCursorError', code: 'INVALID_CURSOR', httpStatus: 400 })
        }
      }
      // A forged token stops a write before it is made.
      const forgedWrite = await call(a, 'POST', '/droplets', {
        as: 'alice',
        body: { name: 'never', region: 'nyc3', size: 's' },
        consistency: altered,
      })
      expect(forgedWrite.status).toBe(400)
      expect(forgedWrite.body.code).toBe('INVALID_CURSOR')
    } finally {
      await topology!.resumeReplay()
    }

    // Once the replica has replayed the writes and B's monitor has seen it, B's plain reads (the replica's) find
    // them too; the never-made droplet is not there.
    await caughtUp()
    const plain = await call(b, 'GET', '/droplets', { as: 'alice' })
    expect(plain.status).toBe(200)
    expect((plain.body.items as { name: string; status: string }[]).map((d) => [d.name, d.status])).toEqual([
      ['web-1b', 'stopped'],
    ])
  })
})
