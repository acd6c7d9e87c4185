import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { once } from 'node:events'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashPassword, User, type Database } from '../../src/index.js'
import { fastHash, openTestDatabase } from '../helpers/database.js'
import { packedExample, type PackedExample } from '../helpers/packed.js'

/*
 * The example runs as its README says: the repository packed with `npm pack`, the example installed from that
 * tarball with `npm install` (in a temporary copy, test/helpers/packed.ts), then `src/server.ts` run with the
 * example's own tsx (here with PORT=0 for a free port), as its own process, against this file's database. Its
 * `@wincloud/data` is what the tarball ships, so a file missing from the package or a broken export fails here.
 */
const run = promisify(execFile)
const tokenSecret = 'test-secret-of-the-express-example-0123456789'
const password = { alice: 'alice-pw-1', bob: 'bob-pw-2', root: 'root-pw-3', carol: 'carol-pw-4' }

let db: Database
let cleanup: () => Promise<void>
let example: PackedExample | undefined
let server: ChildProcess | undefined
let output = ''
let base: string
const ids: Record<keyof typeof password, string> = { alice: '', bob: '', root: '', carol: '' }
const tokens: Partial<Record<keyof typeof password, string>> = {}

/** Starts the example's server on `url` and resolves with its address once it listens. */
async function start(url: string): Promise<string> {
  // `node --import tsx` rather than the tsx command, which would run the server in a child process of its own.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: example!.dir,
    env: {
      ...process.env,
      DATABASE_URL: url,
      PORT: '0',
      APP_TOKEN_SECRET: tokenSecret,
      NODE_ENV: 'production',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  server = child
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example did not start:\n${output}`)), 30_000)
    const read = (chunk: Buffer): void => {
      output += chunk.toString()
      const port = /listening on http:\/\/localhost:(\d+)/.exec(output)?.[1]
      if (port !== undefined) {
        clearTimeout(timer)
        resolve(`http://127.0.0.1:${port}`)
      }
    }
    child.stdout.on('data', read)
    child.stderr.on('data', read)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the example exited with ${code}:\n${output}`))
    })
  })
}

/** A droplet or an audit entry as the API returns it; each test reads the fields it expects. */
interface Row {
  [field: string]: unknown
  id: string
  userId: string
  name: string
  status: string
  actorId: string | null
  action: string
  entityType: string | null
  entityId: string | null
  changes: Record<string, unknown>
  metadata: Record<string, unknown>
  createdAt: string
}

/** Any JSON body of the API, loosely: a row, a page, a login, a bulk result or an error. */
interface Body extends Row {
  items: Row[]
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null }
  code: string
  message: string
  details: { field: string; message: string }[]
  token: string
  expiresAt: string
  user: Row
  updated: string[]
  notFound: string[]
  migrations: { pending: string[] }
}

interface Reply {
  status: number
  headers: Headers
  /** The parsed JSON body; undefined (despite the type) when the answer is not JSON. */
  body: Body
  text: string
}

/** One request to the app; `as` sends that user's token. */
async function call(
  method: string,
  path: string,
  options: {
    as?: keyof typeof password
    token?: string
    body?: unknown
    raw?: string
    headers?: Record<string, string>
  } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers }
  const token = options.token ?? (options.as === undefined ? undefined : tokens[options.as])
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  let body: string | undefined = options.raw
  if (options.body !== undefined) body = JSON.stringify(options.body)
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(`${base}${path}`, { method, headers, body })
  const text = await response.text()
  const json = (response.headers.get('content-type') ?? '').startsWith('application/json')
  return {
    status: response.status,
    headers: response.headers,
    body: (json ? JSON.parse(text) : undefined) as Body,
    text,
  }
}

/** Signs claims the way the example does, to make tokens the server never issued. */
function sign(claims: object, secret = tokenSecret): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  return `${payload}.${createHmac('sha256', secret).update(payload).digest('base64url')}`
}

/** Every page of a keyset list, following `endCursor`; the query string stays the same on every page. */
async function walk(path: string, as: keyof typeof password): Promise<{ pages: number; items: Row[] }> {
  const items: Row[] = []
  let pages = 0
  let after: string | undefined
  for (;;) {
    const separator = path.includes('?') ? '&' : '?'
    const reply = await call('GET', after === undefined ? path : `${path}${separator}after=${after}`, { as })
    expect(reply.status).toBe(200)
    pages += 1
    items.push(...reply.body.items)
    if (!reply.body.pageInfo.hasNextPage) return { pages, items }
    after = reply.body.pageInfo.endCursor ?? undefined
  }
}

beforeAll(async () => {
  // Packing and installing take a while (seconds of CPU): the database is opened meanwhile.
  const [installed, opened] = await Promise.allSettled([
    packedExample('express-app'),
    openTestDatabase({ auth: { passwordHash: fastHash } }),
  ])
  if (installed.status === 'fulfilled') example = installed.value
  if (opened.status === 'fulfilled') ({ db, cleanup } = opened.value)
  if (installed.status === 'rejected') throw installed.reason
  if (opened.status === 'rejected') throw opened.reason
  const { url } = opened.value
  const setup = db.system('express example test: accounts')
  for (const [name, role] of [
    ['alice', 'user'],
    ['bob', 'user'],
    ['root', 'admin'],
    ['carol', 'user'],
  ] as const) {
    const user = await setup.repo(User).create({
      email: `${name}@example.com`,
      username: name,
      passwordHash: await hashPassword(password[name], fastHash),
      role,
    })
    ids[name] = user.id
  }
  base = await start(url)
}, 300_000)

afterAll(async () => {
  if (server?.exitCode === null) {
    server.kill('SIGKILL')
    await once(server, 'exit')
  }
  await cleanup?.()
  await example?.cleanup()
})

describe('the Express example', () => {
  it('type-checks against the installed package (npm run typecheck)', async () => {
    const tsc = join(example!.dir, 'node_modules', '.bin', 'tsc')
    const result = await run(tsc, ['--noEmit', '-p', 'tsconfig.json'], { cwd: example!.dir }).catch(
      (e: { stdout: string; stderr: string }) => e,
    )
    expect(result.stdout + result.stderr).toBe('')
  })

  it('answers the probes and serves metrics without a token', async () => {
    const live = await call('GET', '/health/live')
    expect(live.status).toBe(200)
    expect(live.body.status).toBe('alive')
    expect(live.headers.get('cache-control')).toBe('no-store')
    const ready = await call('GET', '/health/ready')
    expect(ready.status).toBe(200)
    expect(['healthy', 'degraded']).toContain(ready.body.status)
    expect(ready.body.migrations.pending).toEqual([])
    expect(ready.text).not.toContain('postgres://')

    const metrics = await call('GET', '/metrics')
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(metrics.text).toMatch(/^wincloud_db_up 1$/m)
    // Every line is a comment or a sample: name, optional labels, a number.
    for (const line of metrics.text.trimEnd().split('\n')) {
      expect(line).toMatch(/^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[^}]*\})? (-?[0-9.]+(e[+-]?\d+)?|[+-]?Inf|NaN))$/)
    }
  })

  it('logs users in and issues signed tokens', async () => {
    for (const name of ['alice', 'bob', 'root', 'carol'] as const) {
      const reply = await call('POST', '/auth/login', {
        body: { login: `${name}@EXAMPLE.com`, password: password[name] },
      })
      expect(reply.status).toBe(200)
      expect(reply.body).toMatchObject({ tokenType: 'Bearer', user: { id: ids[name], username: name } })
      expect(reply.body.user).not.toHaveProperty('passwordHash')
      expect(Date.parse(reply.body.expiresAt)).toBeGreaterThan(Date.now())
      tokens[name] = reply.body.token
    }
    const claims = JSON.parse(Buffer.from(tokens.root!.split('.')[0]!, 'base64url').toString('utf8'))
    expect(claims).toMatchObject({ sub: ids.root, role: 'admin' })
    expect(Object.keys(claims).sort()).toEqual(['exp', 'role', 'sub'])

    const wrong = await call('POST', '/auth/login', { body: { login: 'alice', password: 'not-it' } })
    const unknown = await call('POST', '/auth/login', { body: { login: 'nobody', password: 'not-it' } })
    const malformed = await call('POST', '/auth/login', { body: { login: ['alice'], password: 1 } })
    for (const reply of [wrong, unknown, malformed]) {
      expect(reply.status).toBe(401)
      expect(reply.body).toEqual({
        name: 'AuthenticationError',
        code: 'AUTHENTICATION_FAILED',
        message: 'Invalid credentials',
        httpStatus: 401,
      })
    }
  })

  it('refuses requests without a valid token', async () => {
    const [payload, signature] = tokens.alice!.split('.') as [string, string]
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    const asAdmin = Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url')
    const flipped = signature.slice(0, -2) + (signature.at(-2) === 'A' ? 'B' : 'A') + signature.at(-1)
    const attempts: (string | undefined)[] = [
      undefined, // no token
      'not-a-token',
      `${asAdmin}.${signature}`, // payload changed, signature kept
      `${payload}.${flipped}`, // signature changed
      `${payload}.${signature}x`,
      sign(claims, 'another-secret-that-is-long-enough-to-sign'), // signed with another secret
      sign({ ...claims, exp: Math.floor(Date.now() / 1000) - 1 }), // expired
      sign({ ...claims, role: 'admin' }), // the right signature, but not the user's role
      sign({ sub: '0190a6b8-0000-7000-8000-000000000000', role: 'user', exp: claims.exp }), // no such user
    ]
    for (const token of attempts) {
      const reply = await call('GET', '/droplets', { token })
      expect(reply.status, token).toBe(401)
      expect(reply.headers.get('www-authenticate')).toBe('Bearer')
      expect(reply.body).toMatchObject({ code: 'AUTHENTICATION_FAILED', httpStatus: 401 })
    }
    const basic = await call('GET', '/droplets', { headers: { authorization: `Basic ${tokens.alice}` } })
    expect(basic.status).toBe(401)
  })

  const aliceDroplets: string[] = []
  let bobDroplet: string

  it('creates droplets for the caller, and refuses invalid ones with details', async () => {
    for (let i = 0; i < 25; i++) {
      const reply = await call('POST', '/droplets', {
        as: 'alice',
        body: { name: `alice-${String(i).padStart(2, '0')}`, region: 'nyc3', size: 's-1vcpu-2gb' },
      })
      expect(reply.status).toBe(201)
      expect(reply.body).toMatchObject({ userId: ids.alice, status: 'building' })
      expect(reply.headers.get('location')).toBe(`/droplets/${reply.body.id}`)
      aliceDroplets.push(reply.body.id)
    }
    const bob = await call('POST', '/droplets', {
      as: 'bob',
      body: { name: 'bob-1', region: 'ams3', size: 's-1vcpu-2gb' },
    })
    expect(bob.status).toBe(201)
    bobDroplet = bob.body.id

    // An admin names the owner; a user naming someone else is refused by the library.
    const forCarol = await call('POST', '/droplets', {
      as: 'root',
      body: { userId: ids.carol, name: 'carol-1', region: 'fra1', size: 's-2vcpu-4gb' },
    })
    expect(forCarol.status).toBe(201)
    expect(forCarol.body.userId).toBe(ids.carol)
    const forOthers = await call('POST', '/droplets', {
      as: 'bob',
      body: { userId: ids.alice, name: 'gift', region: 'fra1', size: 's-2vcpu-4gb' },
    })
    expect(forOthers.status).toBe(403)
    expect(forOthers.body).toMatchObject({ name: 'ForbiddenError', code: 'FORBIDDEN', httpStatus: 403 })

    const invalid = await call('POST', '/droplets', {
      as: 'alice',
      body: { name: '', region: 'New York 3', size: 's-1' },
    })
    expect(invalid.status).toBe(400)
    expect(invalid.body).toMatchObject({ name: 'ValidationError', code: 'VALIDATION_FAILED', httpStatus: 400 })
    expect(invalid.body.details.map((d) => d.field).sort()).toEqual(['name', 'region'])
    expect(invalid.text).not.toContain('New York 3')

    const extra = await call('POST', '/droplets', {
      as: 'alice',
      body: { name: 'x', region: 'nyc3', size: 's-1', status: 'active', id: aliceDroplets[0] },
    })
    expect(extra.status).toBe(400)
    expect(extra.body.details.map((d) => d.field)).toEqual(['body.status', 'body.id'])

    const notJson = await call('POST', '/droplets', { as: 'alice', raw: '{"name": ' })
    expect(notJson.status).toBe(400)
    expect(notJson.body).toEqual({ error: 'bad_request' })
    const large = await call('POST', '/droplets', { as: 'alice', body: { name: 'x'.repeat(200_000) } })
    expect(large.status).toBe(413)
    expect(large.body).toEqual({ error: 'payload_too_large' })
    const noOwner = await call('POST', '/droplets', {
      as: 'root',
      body: { userId: '0190a6b8-0000-7000-8000-000000000000', name: 'orphan', region: 'fra1', size: 's-1' },
    })
    expect(noOwner.status).toBe(409)
    expect(noOwner.body).toMatchObject({ name: 'ConflictError', code: 'CONFLICT', httpStatus: 409 })
    expect(noOwner.text).not.toContain('0190a6b8')
    const array = await call('POST', '/droplets', { as: 'alice', body: [] })
    expect(array.status).toBe(400)
    expect(array.body.details).toEqual([{ field: 'body', message: 'must be an object' }])
  })

  it("keeps each user to their own droplets: someone else's is not found", async () => {
    const own = await call('GET', `/droplets/${aliceDroplets[0]}`, { as: 'alice' })
    expect(own.status).toBe(200)
    expect(own.body.id).toBe(aliceDroplets[0])

    const theirs = await call('GET', `/droplets/${bobDroplet}`, { as: 'alice' })
    const missing = await call('GET', '/droplets/0190a6b8-0000-7000-8000-000000000000', { as: 'alice' })
    const malformed = await call('GET', '/droplets/not-an-id', { as: 'alice' })
    const patched = await call('PATCH', `/droplets/${bobDroplet}`, { as: 'alice', body: { name: 'taken' } })
    for (const reply of [theirs, missing, malformed, patched]) {
      expect(reply.status).toBe(404)
      expect(reply.body).toEqual({
        name: 'NotFoundError',
        code: 'NOT_FOUND',
        message: 'Droplet not found.',
        httpStatus: 404,
      })
    }
    const asAdmin = await call('GET', `/droplets/${bobDroplet}`, { as: 'root' })
    expect(asAdmin.status).toBe(200)
    expect(asAdmin.body.name).toBe('bob-1')

    const bobs = await walk('/droplets?size=100', 'bob')
    expect(bobs.items.map((d) => d.id)).toEqual([bobDroplet])
    const all = await walk('/droplets?size=100', 'root')
    expect(all.items).toHaveLength(27)
  })

  it('walks the pages by cursor, without duplicates or gaps, with a filter and a sort', async () => {
    const newestFirst = await walk('/droplets?sort=-createdAt&size=7', 'alice')
    expect(newestFirst.pages).toBe(4)
    expect(newestFirst.items.map((d) => d.id)).toEqual([...aliceDroplets].reverse())
    expect(newestFirst.items.every((d) => d.userId === ids.alice)).toBe(true)

    const filtered = await walk('/droplets?status=building,active&name=ALICE-1&sort=name&size=4', 'alice')
    expect(filtered.items.map((d) => d.name)).toEqual(Array.from({ length: 10 }, (_, i) => `alice-1${i}`))
    expect(filtered.pages).toBe(3)

    // The previous page, from the first item of the second.
    const first = await call('GET', '/droplets?sort=name&size=5', { as: 'alice' })
    const second = await call('GET', `/droplets?sort=name&size=5&after=${first.body.pageInfo.endCursor}`, {
      as: 'alice',
    })
    expect(second.body.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true })
    const back = await call('GET', `/droplets?sort=name&size=5&before=${second.body.pageInfo.startCursor}`, {
      as: 'alice',
    })
    expect(back.body.items.map((d) => d.id)).toEqual(first.body.items.map((d) => d.id))

    const recent = await call('GET', `/droplets?createdAfter=${encodeURIComponent('2000-01-01T00:00:00Z')}&size=1`, {
      as: 'alice',
    })
    expect(recent.status).toBe(200)
    expect(recent.body.items).toHaveLength(1)
  })

  it('answers bad queries and cursors with 400 and the details', async () => {
    const cases: [string, string, string?][] = [
      ['/droplets?status=sleeping', 'VALIDATION_FAILED', 'filter.status'],
      ['/droplets?createdAfter=yesterday', 'VALIDATION_FAILED', 'filter.createdAt.gte'],
      ['/droplets?sort=ipAddress', 'VALIDATION_FAILED', 'sort[0]'],
      ['/droplets?size=0', 'VALIDATION_FAILED', 'page.size'],
      ['/droplets?size=abc', 'VALIDATION_FAILED', 'page.size'],
      ['/droplets?size=101', 'VALIDATION_FAILED', 'page.size'],
      ['/droplets?colour=red', 'VALIDATION_FAILED', 'query.colour'],
      ['/droplets?status=active&status=stopped', 'VALIDATION_FAILED', 'query.status'],
      ['/droplets?after=abc', 'INVALID_CURSOR'],
      ['/audit?size=-1', 'VALIDATION_FAILED', 'page.size'],
    ]
    for (const [path, code, field] of cases) {
      const reply = await call('GET', path, { as: 'alice' })
      expect(reply.status, path).toBe(400)
      expect(reply.body.code, path).toBe(code)
      if (field !== undefined)
        expect(
          reply.body.details.map((d) => d.field),
          path,
        ).toContain(field)
      expect(reply.text, path).not.toMatch(/sleeping|yesterday/)
    }

    // A cursor is bound to its sort, its filter and its actor, and any change to it is refused.
    const page = await call('GET', '/droplets?status=building&size=5', { as: 'alice' })
    const cursor = page.body.pageInfo.endCursor as string
    expect((await call('GET', `/droplets?status=building&size=5&after=${cursor}`, { as: 'alice' })).status).toBe(200)
    const altered = `${cursor.slice(0, -1)}${cursor.endsWith('A') ? 'B' : 'A'}`
    for (const [path, as] of [
      [`/droplets?size=5&after=${cursor}`, 'alice'],
      [`/droplets?status=active&size=5&after=${cursor}`, 'alice'],
      [`/droplets?status=building&sort=name&size=5&after=${cursor}`, 'alice'],
      [`/droplets?status=building&size=5&after=${cursor}`, 'bob'],
      [`/droplets?status=building&size=5&after=${altered}`, 'alice'],
    ] as const) {
      const reply = await call('GET', path, { as })
      expect(reply.status, `${as} ${path}`).toBe(400)
      expect(reply.body).toMatchObject({ name: 'InvalidCursorError', code: 'INVALID_CURSOR', httpStatus: 400 })
      expect(reply.body.message).toMatch(/^Invalid cursor/)
      expect(reply.text).not.toContain(cursor.slice(0, 16))
    }

    const route = await call('GET', '/nowhere', { as: 'alice' })
    expect(route.status).toBe(404)
    expect(route.body).toMatchObject({ code: 'NOT_FOUND' })
  })

  it('patches and changes status in bulk, within the scope', async () => {
    const patched = await call('PATCH', `/droplets/${aliceDroplets[0]}`, {
      as: 'alice',
      body: { name: 'alice-web', status: 'active' },
      headers: { 'x-request-id': 'req-patch-1' },
    })
    expect(patched.status).toBe(200)
    expect(patched.headers.get('x-request-id')).toBe('req-patch-1')
    expect(patched.body).toMatchObject({ id: aliceDroplets[0], name: 'alice-web', status: 'active' })
    const bad = await call('PATCH', `/droplets/${aliceDroplets[0]}`, { as: 'alice', body: { status: 'sleeping' } })
    expect(bad.status).toBe(400)
    expect(bad.body.details.map((d) => d.field)).toEqual(['status'])
    const owner = await call('PATCH', `/droplets/${aliceDroplets[0]}`, { as: 'alice', body: { userId: ids.bob } })
    expect(owner.status).toBe(400)

    const wanted = aliceDroplets.slice(1, 6)
    const bulk = await call('POST', '/droplets/bulk-status', {
      as: 'alice',
      body: { ids: [...wanted, bobDroplet, 'not-an-id'], status: 'stopped' },
      headers: { 'x-request-id': 'req-bulk-1' },
    })
    expect(bulk.status).toBe(200)
    expect([...bulk.body.updated].sort()).toEqual([...wanted].sort())
    expect([...bulk.body.notFound].sort()).toEqual([bobDroplet, 'not-an-id'].sort())

    const stopped = await walk('/droplets?status=stopped&size=100', 'alice')
    expect(stopped.items.map((d) => d.id).sort()).toEqual([...wanted].sort())
    const untouched = await call('GET', `/droplets/${bobDroplet}`, { as: 'bob' })
    expect(untouched.body.status).toBe('building')

    for (const body of [
      { ids: { filter: { status: 'building' } }, status: 'stopped' },
      { ids: [], status: 'stopped' },
      { ids: wanted },
      { ids: wanted, status: 'stopped', name: 'x' },
    ]) {
      const reply = await call('POST', '/droplets/bulk-status', { as: 'alice', body })
      expect(reply.status, JSON.stringify(body)).toBe(400)
      expect(reply.body.code).toBe('VALIDATION_FAILED')
    }
    const badStatus = await call('POST', '/droplets/bulk-status', {
      as: 'alice',
      body: { ids: wanted, status: 'asleep' },
    })
    expect(badStatus.status).toBe(400)
    expect(badStatus.body.details.map((d) => d.field)).toEqual(['status'])
  })

  it("shows the caller's audit trail, newest first, by cursor", async () => {
    const trail = await walk('/audit?size=9', 'alice')
    expect(trail.pages).toBeGreaterThan(1)
    expect(new Set(trail.items.map((e) => e.id)).size).toBe(trail.items.length)
    expect(trail.items.every((e) => e.actorId === ids.alice)).toBe(true)
    const times = trail.items.map((e) => Date.parse(e.createdAt))
    expect(times).toEqual([...times].sort((a, b) => b - a))

    const byAction = (action: string) => trail.items.filter((e) => e.action === action)
    expect(byAction('droplet.create')).toHaveLength(25)
    expect(byAction('auth.login').length).toBeGreaterThanOrEqual(1)
    expect(byAction('auth.login_failed').length).toBeGreaterThanOrEqual(1)
    const bulkRows = byAction('droplet.update').filter((e) => e.metadata.requestId === 'req-bulk-1')
    expect(bulkRows.map((e) => e.entityId).sort()).toEqual(aliceDroplets.slice(1, 6).sort())
    for (const row of bulkRows) {
      expect(row.changes).toEqual({ status: { from: 'building', to: 'stopped' } })
      expect(row.metadata.ip).toMatch(/^(::ffff:)?127\.0\.0\.1$/)
    }
    const [patch] = byAction('droplet.update').filter((e) => e.metadata.requestId === 'req-patch-1')
    expect(patch).toMatchObject({
      entityType: 'droplet',
      entityId: aliceDroplets[0],
      changes: { name: { from: 'alice-00', to: 'alice-web' }, status: { from: 'building', to: 'active' } },
    })

    const updates = await call('GET', '/audit?action=droplet.update&size=100', { as: 'alice' })
    expect(updates.body.items).toHaveLength(6)

    // Bob sees only his own entries, even when he asks for Alice's; an admin may ask for anyone's.
    const bobAsksForAlice = await call('GET', `/audit?actorId=${ids.alice}`, { as: 'bob' })
    expect(bobAsksForAlice.status).toBe(200)
    expect(bobAsksForAlice.body.items).toEqual([])
    const bobs = await walk('/audit?size=100', 'bob')
    expect(bobs.items.length).toBeGreaterThan(0)
    expect(bobs.items.every((e) => e.actorId === ids.bob)).toBe(true)
    const rootAsksForAlice = await walk(`/audit?actorId=${ids.alice}&size=100`, 'root')
    expect(rootAsksForAlice.items.map((e) => e.id)).toEqual(trail.items.map((e) => e.id))
  })

  it('refuses the token of a user deactivated since they logged in', async () => {
    expect((await call('GET', '/droplets', { as: 'carol' })).status).toBe(200)
    await db.system('express example test: deactivate').repo(User).update(ids.carol, { isActive: false })
    const reply = await call('GET', '/droplets', { as: 'carol' })
    expect(reply.status).toBe(401)
    const login = await call('POST', '/auth/login', { body: { login: 'carol', password: password.carol } })
    expect(login.status).toBe(401)
  })

  it('shuts down cleanly on SIGTERM, closing the database', async () => {
    const exited = once(server!, 'exit')
    server!.kill('SIGTERM')
    const [code] = await exited
    expect(code, output).toBe(0)
    expect(output).toContain('SIGTERM: closing')
  })
})
