import type { HealthOptions, HealthReport } from './health.js'

/**
 * Options of {@link healthHandler}: `check: 'ready'` (default) runs `db.health()` and answers 200 (healthy or
 * degraded) or 503 (unhealthy) with the report; `check: 'live'` answers 200 at once without touching the database
 * (the process is alive), for liveness probes that must not restart a pod because PostgreSQL is down.
 *
 * @example
 * ```ts
 * const options: HealthHandlerOptions = { check: 'ready', timeoutMs: 1_000 }
 * ```
 */
export interface HealthHandlerOptions extends HealthOptions {
  readonly check?: 'ready' | 'live'
}

/** What the handler needs of a database. */
interface HealthSource {
  health(options?: HealthOptions): Promise<HealthReport>
}

/** A node:http `ServerResponse`, an Express `res`, or a Fastify `reply`. */
interface ResponseLike {
  statusCode?: number
  setHeader?(name: string, value: string): unknown
  end?(body: string): unknown
  // Fastify
  code?(status: number): ResponseLike
  header?(name: string, value: string): ResponseLike
  send?(body: string): unknown
  sent?: boolean
}

/**
 * An HTTP handler for readiness or liveness probes, for node:http, Express (`app.get('/health/ready', handler)`)
 * and Fastify (`fastify.get('/health/ready', handler)`). The body is JSON: the health report for readiness
 * (never a connection string or a credential), `{ status: 'alive' }` for liveness; `Cache-Control: no-store`.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http'
 * const ready = healthHandler(db, { check: 'ready', timeoutMs: 1_000 })
 * const live = healthHandler(db, { check: 'live' })
 * createServer((req, res) => void (req.url === '/health/live' ? live(req, res) : ready(req, res))).listen(8080)
 * ```
 */
export function healthHandler(
  db: HealthSource,
  options: HealthHandlerOptions = {},
): (request: unknown, response: ResponseLike) => Promise<void> {
  const { check = 'ready', ...healthOptions } = options
  if (check !== 'ready' && check !== 'live') throw new TypeError("healthHandler: check must be 'ready' or 'live'.")
  return async (_request, response) => {
    let status = 200
    let body: string
    if (check === 'live') {
      body = JSON.stringify({ status: 'alive', checkedAt: new Date().toISOString() })
    } else {
      try {
        const report = await db.health(healthOptions)
        status = report.status === 'unhealthy' ? 503 : 200
        body = JSON.stringify(report)
      } catch {
        // health() only throws for bad options: a programming error, reported without details.
        status = 500
        body = JSON.stringify({ status: 'unhealthy', error: 'health check failed' })
      }
    }
    send(response, status, body)
  }
}

function send(response: ResponseLike, status: number, body: string): void {
  if (typeof response.code === 'function' && typeof response.send === 'function') {
    if (response.sent === true) return
    response.code(status)
    response.header?.('content-type', 'application/json; charset=utf-8')
    response.header?.('cache-control', 'no-store')
    response.send(body)
    return
  }
  response.statusCode = status
  response.setHeader?.('content-type', 'application/json; charset=utf-8')
  response.setHeader?.('cache-control', 'no-store')
  response.end?.(body)
}
