/**
 * A WinCloud-style HTTP API on `@wincloud/data`.
 *
 * `createApp(db, options)` builds the Express app and does not listen: `server.ts` starts it, and the tests drive it
 * over HTTP. Everything a request does on behalf of a user goes through `db.scope(user, meta)`, so the library
 * decides what the user may see and change; this file only turns HTTP into calls and errors into responses.
 *
 * Routes:
 *
 * - `POST /auth/login`: `{ login, password }` → `{ token, tokenType, expiresAt, user }`.
 * - `GET /droplets`: the caller's droplets by cursor, with filters and a sort from the query string.
 * - `GET /droplets/:id`, `POST /droplets`, `PATCH /droplets/:id`.
 * - `POST /droplets/bulk-status`: `{ ids, status }` → `{ updated, notFound }`.
 * - `GET /audit`: the caller's audit trail, newest first, by cursor.
 * - `GET /health/ready`, `GET /health/live`: probes. `GET /metrics`: Prometheus text.
 *
 * Read-your-writes across instances: every write through the caller's scope answers with an `X-Consistency-Token`
 * header. A request that sends the latest one back, to this instance or another, reads at least that far, from a
 * replica that has replayed it or from the primary.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto'
import express, {
  type ErrorRequestHandler,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express'
import {
  AuditLog,
  AuthenticationError,
  Droplet,
  NotFoundError,
  User,
  ValidationError,
  healthHandler,
  isDataError,
  type Database,
  type DropletStatus,
  type FilterCondition,
  type Filter,
  type RequestMeta,
  type Scope,
  type SortKey,
  type ValidationDetail,
} from '@wincloud/data'

/** Options of {@link createApp}. */
export interface AppOptions {
  /** Signs login tokens (HMAC-SHA256). At least 32 characters; the same on every instance behind one address. */
  readonly tokenSecret: string
  /** How long a login token is valid, in seconds. Default 3600. */
  readonly tokenTtlSeconds?: number
  /** Where unexpected errors are reported (they answer `500 { error: 'internal' }`). Default: `console`. */
  readonly logger?: { error(message: string, error: unknown): void }
}

/** What a login token carries: the user's id, their role when the token was made, and when it expires (seconds). */
export interface TokenClaims {
  readonly sub: string
  readonly role: string
  readonly exp: number
}

/** Fields a client may set, per write. Anything else in a body is refused, never passed on. */
const CREATE_FIELDS = ['name', 'region', 'size', 'userId'] as const
const PATCH_FIELDS = ['name', 'size', 'status'] as const
/** The query parameters of the lists. Anything else is refused, so a misspelt filter never lists everything. */
const DROPLET_QUERY = [
  'status',
  'region',
  'name',
  'createdAfter',
  'createdBefore',
  'sort',
  'size',
  'after',
  'before',
] as const
const AUDIT_QUERY = ['actorId', 'action', 'entityType', 'entityId', 'size', 'after', 'before'] as const
/** The most ids one bulk request may name. */
const BULK_MAX_IDS = 1_000
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
/** Carries a consistency token: set on the answers of writes, read from requests. */
const CONSISTENCY_HEADER = 'X-Consistency-Token'

/**
 * Signs claims as `base64url(JSON).base64url(HMAC-SHA256(secret, first part))`.
 *
 * @example
 * ```ts
 * const token = signToken({ sub: user.id, role: user.role, exp: Math.floor(Date.now() / 1000) + 3600 }, secret)
 * ```
 */
export function signToken(claims: TokenClaims, secret: string): string {
  const payload = Buffer.from(JSON.stringify({ sub: claims.sub, role: claims.role, exp: claims.exp })).toString(
    'base64url',
  )
  return `${payload}.${mac(payload, secret)}`
}

/** The claims of a token signed with `secret` that has not expired, or undefined for anything else. */
export function verifyToken(token: string, secret: string, now = Date.now()): TokenClaims | undefined {
  const parts = token.split('.')
  if (parts.length !== 2) return undefined
  const [payload = '', signature = ''] = parts
  // Compare the canonical encodings, in constant time: a signature spelled differently is a different token.
  const expected = Buffer.from(mac(payload, secret))
  const given = Buffer.from(signature)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  let claims: unknown
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof claims !== 'object' || claims === null) return undefined
  const { sub, role, exp } = claims as Record<string, unknown>
  if (typeof sub !== 'string' || typeof role !== 'string' || typeof exp !== 'number') return undefined
  return exp * 1000 > now ? { sub, role, exp } : undefined
}

function mac(payload: string, secret: string): string {
  return createHmac('sha256', secret).update(payload).digest('base64url')
}

/** Per-request state: the request id, and the caller's scope once the token has been checked. */
interface RequestState {
  readonly requestId: string
  scope?: Scope
}

/**
 * The WinCloud API as an Express app, on an open (and migrated) database. It does not listen.
 *
 * @example
 * ```ts
 * const app = createApp(db, { tokenSecret: process.env.APP_TOKEN_SECRET! })
 * app.listen(3000)
 * ```
 */
export function createApp(db: Database, options: AppOptions): express.Express {
  const { tokenSecret, tokenTtlSeconds = 3_600, logger = console } = options
  if (typeof tokenSecret !== 'string' || tokenSecret.length < 32) {
    throw new TypeError('createApp: tokenSecret must be a string of at least 32 characters.')
  }
  if (!Number.isInteger(tokenTtlSeconds) || tokenTtlSeconds < 1) {
    throw new TypeError('createApp: tokenTtlSeconds must be a positive integer.')
  }

  const states = new WeakMap<Request, RequestState>()
  const stateOf = (req: Request): RequestState => {
    const state = states.get(req)
    if (state === undefined) throw new Error('request state missing')
    return state
  }
  const metaOf = (req: Request): RequestMeta => ({
    ip: req.ip,
    userAgent: req.get('user-agent')?.slice(0, 1_000),
    requestId: stateOf(req).requestId,
  })
  /** The caller's scope: set by `authenticate`, which every route that uses it runs first. */
  const scopeOf = (req: Request): Scope => {
    const scope = stateOf(req).scope
    if (scope === undefined) throw new Error('route without authentication')
    return scope
  }

  /** Checks the bearer token, loads the user it names, and makes the request's scope. */
  const authenticate = handle(async (req, _res, next) => {
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(req.get('authorization') ?? '')
    const claims = match?.[1] === undefined ? undefined : verifyToken(match[1], tokenSecret)
    if (claims === undefined) throw new AuthenticationError('Missing, invalid or expired token.')
    // Unscoped on purpose: this is the host deciding who is acting. A user deactivated, removed or given another
    // role since the token was made is refused; the token is never trusted further than the row.
    const user = await db.model(User).query().findById(claims.sub)
    if (user === undefined || !user.isActive || user.role !== claims.role) {
      throw new AuthenticationError('Missing, invalid or expired token.')
    }
    // With the token of an earlier write (made here or on another instance), the scope reads at least that far. An
    // altered token, or another user's, is the library's InvalidCursorError: 400 INVALID_CURSOR.
    stateOf(req).scope = db.scope(user, metaOf(req), { after: req.get(CONSISTENCY_HEADER) })
    next()
  })

  /**
   * Answers a write made through the caller's scope, with a consistency token of it: the client sends the token
   * back with its next requests, so they see this write on any instance.
   */
  const sendWritten = async (req: Request, res: Response, body: unknown): Promise<void> => {
    try {
      res.set(CONSISTENCY_HEADER, await scopeOf(req).consistencyToken())
    } catch (error) {
      // The write has committed: answer it all the same. The client keeps the token it had.
      logger.error(`${req.method} ${req.path}: no consistency token`, error)
    }
    res.json(body)
  }

  const app = express()
  app.disable('x-powered-by')
  // Query values are plain strings (or lists of them when repeated), never nested objects.
  app.set('query parser', 'simple')

  app.use((req, res, next) => {
    const given = req.get('x-request-id')
    const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID()
    states.set(req, { requestId })
    res.set('X-Request-Id', requestId)
    next()
  })

  // Probes and metrics need no token: expose them to the load balancer and the scraper, not to the internet.
  const ready = healthHandler(db, { check: 'ready', timeoutMs: 1_000 })
  const live = healthHandler(db, { check: 'live' })
  app.get(
    '/health/ready',
    handle((req, res) => ready(req, res)),
  )
  app.get(
    '/health/live',
    handle((req, res) => live(req, res)),
  )
  app.get(
    '/metrics',
    handle(async (_req, res) => {
      const text = await db.metrics({ health: { timeoutMs: 1_000 } })
      // Sent as bytes, so Express keeps the content type as set (it adds `charset=utf-8` after the version).
      res.set('Content-Type', 'text/plain; version=0.0.4').send(Buffer.from(text, 'utf8'))
    }),
  )

  app.use(express.json({ limit: '100kb' }))

  app.post(
    '/auth/login',
    handle(async (req, res) => {
      const { login, password } = bodyOf(req)
      // db.auth.login answers every failure, malformed input included, with the same AuthenticationError.
      if (typeof login !== 'string' || typeof password !== 'string') throw new AuthenticationError()
      const user = await db.auth.login(login, password, metaOf(req))
      const exp = Math.floor(Date.now() / 1000) + tokenTtlSeconds
      res.json({
        token: signToken({ sub: user.id, role: user.role, exp }, tokenSecret),
        tokenType: 'Bearer',
        expiresAt: new Date(exp * 1000).toISOString(),
        user,
      })
    }),
  )

  app.get(
    '/droplets',
    authenticate,
    handle(async (req, res) => {
      const q = queryOf(req, DROPLET_QUERY)
      // `?status=active` or `?status=active,stopped`. The casts only inform the compiler: the library checks every
      // value of a filter and a sort at run time (a ValidationError naming what is allowed).
      const statuses = q.status?.split(',') as DropletStatus[] | undefined
      const filter: Filter<typeof Droplet> = {
        status: statuses === undefined ? undefined : statuses.length > 1 ? { in: statuses } : statuses[0],
        region: q.region,
        name: q.name === undefined ? undefined : { ilike: { contains: q.name } },
        createdAt: rangeOf(q.createdAfter, q.createdBefore),
      }
      const page = await scopeOf(req)
        .repo(Droplet)
        .list({ filter, sort: sortOf(q.sort), page: { size: sizeOf(q.size), after: q.after, before: q.before } })
      res.json(page)
    }),
  )

  app.get(
    '/droplets/:id',
    authenticate,
    handle(async (req, res) => {
      res.json(
        await scopeOf(req)
          .repo(Droplet)
          .getById(req.params.id ?? ''),
      )
    }),
  )

  app.post(
    '/droplets',
    authenticate,
    handle(async (req, res) => {
      // A user's droplet is theirs (the library fills in userId); an admin names the owner.
      const droplet = await scopeOf(req)
        .repo(Droplet)
        .create(pick(bodyOf(req), CREATE_FIELDS))
      await sendWritten(req, res.status(201).location(`/droplets/${droplet.id}`), droplet)
    }),
  )

  app.patch(
    '/droplets/:id',
    authenticate,
    handle(async (req, res) => {
      const droplet = await scopeOf(req)
        .repo(Droplet)
        .update(req.params.id ?? '', pick(bodyOf(req), PATCH_FIELDS))
      await sendWritten(req, res, droplet)
    }),
  )

  app.post(
    '/droplets/bulk-status',
    authenticate,
    handle(async (req, res) => {
      const { ids, status, ...rest } = bodyOf(req)
      const details: ValidationDetail[] = Object.keys(rest).map((key) => ({
        field: `body.${displayKey(key)}`,
        message: 'is not a field of this request',
      }))
      // Only a list of ids: bulkUpdate also takes `{ filter }`, which must not come from a client here.
      const list = isIdList(ids) ? ids : undefined
      if (list === undefined) details.push({ field: 'body.ids', message: `must be a list of 1 to ${BULK_MAX_IDS} ids` })
      if (status === undefined) details.push({ field: 'body.status', message: 'is required' })
      if (list === undefined || details.length > 0) throw new ValidationError('Invalid bulk status change.', details)
      // The library checks the status against the model's schema. Ids of droplets the caller may not see come back
      // in notFound, untouched, like ids that do not exist.
      const result = await scopeOf(req)
        .repo(Droplet)
        .bulkUpdate(list, { status: status as DropletStatus })
      await sendWritten(req, res, result)
    }),
  )

  app.get(
    '/audit',
    authenticate,
    handle(async (req, res) => {
      const q = queryOf(req, AUDIT_QUERY)
      const scope = scopeOf(req)
      // The caller's own trail by default. The scope still decides: a user asking for someone else's gets nothing.
      const filter: Filter<typeof AuditLog> = {
        actorId: q.actorId ?? scope.actor?.id,
        action: q.action,
        entityType: q.entityType,
        entityId: q.entityId,
      }
      const page = await scope
        .repo(AuditLog)
        .list({ filter, sort: ['-createdAt'], page: { size: sizeOf(q.size), after: q.after, before: q.before } })
      res.json(page)
    }),
  )

  app.use((_req, _res, next) => {
    next(new NotFoundError('Route'))
  })

  // One place turns every error into a response. The library's errors carry their status and a body that is safe
  // to send (toJSON: name, code, message, httpStatus, details; never values, SQL or the cause). Anything else is
  // a bug or an outage: logged here, and answered without details.
  const errors: ErrorRequestHandler = (error: unknown, req, res, next) => {
    if (res.headersSent) {
      next(error)
      return
    }
    if (isDataError(error)) {
      if (error.httpStatus === 401) res.set('WWW-Authenticate', 'Bearer')
      if (error.httpStatus === 503) res.set('Retry-After', '1')
      if (error.httpStatus >= 500) logger.error(`${req.method} ${req.path}: ${error.name}`, error)
      res.status(error.httpStatus).json(error.toJSON())
      return
    }
    const status = clientErrorStatus(error)
    if (status !== undefined) {
      res.status(status).json({ error: status === 413 ? 'payload_too_large' : 'bad_request' })
      return
    }
    logger.error(`${req.method} ${req.path}: unexpected error`, error)
    res.status(500).json({ error: 'internal' })
  }
  app.use(errors)

  return app
}

/** Express 4 does not catch rejected promises: this passes them on to the error handler. */
function handle(route: (req: Request, res: Response, next: NextFunction) => Promise<void>): RequestHandler {
  return (req, res, next) => {
    route(req, res, next).catch(next)
  }
}

/** The JSON body as an object. */
function bodyOf(req: Request): Record<string, unknown> {
  const body: unknown = req.body
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError('The request body must be a JSON object.', [
      { field: 'body', message: 'must be an object' },
    ])
  }
  return body as Record<string, unknown>
}

/** The fields of `body` a client may set; any other field is a ValidationError. */
function pick(body: Record<string, unknown>, allowed: readonly string[]): Record<string, unknown> {
  const picked: Record<string, unknown> = {}
  const details: ValidationDetail[] = []
  for (const [key, value] of Object.entries(body)) {
    if (allowed.includes(key)) picked[key] = value
    else details.push({ field: `body.${displayKey(key)}`, message: 'is not a field of this request' })
  }
  if (details.length > 0) throw new ValidationError('The request body has fields that cannot be set.', details)
  return picked
}

/** The query parameters a route knows, each given at most once; anything else is a ValidationError. */
function queryOf<K extends string>(req: Request, allowed: readonly K[]): Partial<Record<K, string>> {
  const values: Partial<Record<K, string>> = {}
  const details: ValidationDetail[] = []
  for (const [key, value] of Object.entries(req.query as Record<string, unknown>)) {
    if (!(allowed as readonly string[]).includes(key)) {
      details.push({ field: `query.${displayKey(key)}`, message: 'is not a parameter of this route' })
    } else if (typeof value !== 'string') {
      details.push({ field: `query.${key}`, message: 'must be given once' })
    } else {
      values[key as K] = value
    }
  }
  if (details.length > 0) throw new ValidationError('Invalid query parameters.', details)
  return values
}

/** `?sort=-createdAt,name` → `['-createdAt', 'name']`; the library checks each name against the model's sortable. */
function sortOf(sort: string | undefined): SortKey<typeof Droplet>[] | undefined {
  return sort?.split(',') as SortKey<typeof Droplet>[] | undefined
}

/** `?size=20` → 20. Not a number, or not an integer from 1 to 100, is the library's ValidationError. */
function sizeOf(size: string | undefined): number | undefined {
  return size === undefined ? undefined : Number(size)
}

/** `?createdAfter=…&createdBefore=…` → `{ gte, lt }` with the bounds that were given (the library checks them). */
function rangeOf(from: string | undefined, to: string | undefined): FilterCondition<'timestamp', false> | undefined {
  if (from === undefined && to === undefined) return undefined
  return { ...(from === undefined ? {} : { gte: from }), ...(to === undefined ? {} : { lt: to }) }
}

/** A key from the client as it may appear in a message: short identifiers only, as the library does. */
function displayKey(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key) ? key : '(invalid key)'
}

function isIdList(value: unknown): value is string[] {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.length <= BULK_MAX_IDS &&
    value.every((id) => typeof id === 'string')
  )
}

/** The status of a client error raised by Express's own middleware (a body that is not JSON, or too large). */
function clientErrorStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const { status, expose } = error as { status?: unknown; expose?: unknown }
  return expose === true && typeof status === 'number' && status >= 400 && status < 500 ? status : undefined
}
