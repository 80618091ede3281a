// oidc-provider (panva), configured as a client-credentials authorization server
// for the conformance suite in tests/suite/conformance.rs and dpop.rs.
//
// Usage: node server.mjs <config.json>
// The config names the clients; private_key_jwt clients carry a public key in PEM
// form, turned into a JWK here. The server listens on a free loopback port and
// prints `LISTENING <port>` once it accepts requests; it stops when its stdin
// closes, so a crashed test run leaves no server behind.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const SCOPE = config.scope;
const RESOURCE = config.resource;
// oidc-provider refuses to introspect JWT access tokens, so clients marked
// `opaque` get opaque ones (from a second resource) for the introspection test.
const OPAQUE_RESOURCE = config.opaque_resource;
const opaqueClients = new Set(config.clients.filter((c) => c.opaque).map((c) => c.client_id));
// Clients whose DPoP proofs must carry a server nonce (features.dPoP.requireNonce).
const nonceClients = new Set(config.clients.filter((c) => c.dpop_nonce).map((c) => c.client_id));
// Every scope a client may ask for: the suite's default ones and the ones the
// scope tests derive from generated clients.
const SCOPES = [...new Set([...SCOPE.split(' '), ...(config.extra_scopes ?? [])])];
// Token requests carrying a DPoP proof, counted by the proof key's `x` (or `n`;
// each test uses a key of its own): how the suite sees that a nonce challenge
// was answered by exactly one retry.
const dpopRequests = new Map();

const clients = config.clients.map((c) => {
  const client = {
    client_id: c.client_id,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPES.join(' '),
    token_endpoint_auth_method: c.token_endpoint_auth_method,
  };
  // A client registered by the URL of its JWK Set (served by the test on loopback).
  if (c.jwks_uri !== undefined) {
    client.jwks_uri = c.jwks_uri;
    client.token_endpoint_auth_signing_alg = c.token_endpoint_auth_signing_alg;
  }
  if (c.client_secret !== undefined) client.client_secret = c.client_secret;
  if (c.public_key_pem !== undefined) {
    const jwk = createPublicKey(c.public_key_pem).export({ format: 'jwk' });
    client.jwks = { keys: [{ ...jwk, kid: c.kid, use: 'sig', alg: c.token_endpoint_auth_signing_alg }] };
    client.token_endpoint_auth_signing_alg = c.token_endpoint_auth_signing_alg;
  }
  return client;
});

// The server's own signing key for JWT access tokens, new each run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'server-key', use: 'sig', alg: 'RS256' };

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients,
    jwks: { keys: [signingJwk] },
    scopes: SCOPES,
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'RS384', 'ES256', 'ES384', 'PS256'],
      // The default is ES256 and EdDSA only; RS256 and PS256 proofs are tested too.
      dPoPSigningAlgValues: ['ES256', 'RS256', 'PS256'],
    },
    // The JWK Sets of jwks_uri clients are served by the test on 127.0.0.1, which
    // the SSRF protection of the default fetch refuses: this fetch goes without
    // it. A test server only; never do this in production.
    fetch: (url, options) => {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      dPoP: {
        enabled: true,
        // Exactly 32 bytes, new each run: nonces are derived from it.
        nonceSecret: randomBytes(32),
        requireNonce: (ctx) => nonceClients.has(ctx.oidc?.client?.clientId),
      },
      resourceIndicators: {
        enabled: true,
        // Our client sends no `resource`: the FHIR server is the default audience.
        defaultResource: (ctx, client) => (opaqueClients.has(client.clientId) ? OPAQUE_RESOURCE : RESOURCE),
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          scope: SCOPES.join(' '),
          audience: resourceIndicator,
          accessTokenFormat: resourceIndicator === OPAQUE_RESOURCE ? 'opaque' : 'jwt',
          accessTokenTTL: config.access_token_ttl,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    // Test-only routes, beside the provider's.
    const url = new URL(req.url, 'http://127.0.0.1');
    const [, test, what, arg] = url.pathname.split('/');
    if (test === '__test' && what === 'jwks-refresh') {
      // Fetches the client's JWK Set again now, as oidc-provider does once its
      // copy is stale (after the set's max-age, 60 s at least) and an
      // assertion names a key it does not hold.
      const client = await provider.Client.find(decodeURIComponent(arg));
      if (!client) {
        res.writeHead(404).end();
        return;
      }
      client.asymmetricKeyStore.freshUntil = 0;
      await client.asymmetricKeyStore.refresh();
      res.writeHead(204).end();
      return;
    }
    if (test === '__test' && what === 'dpop-requests') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ count: dpopRequests.get(decodeURIComponent(arg)) ?? 0 }));
      return;
    }
    const proof = req.headers.dpop;
    if (url.pathname === '/token' && typeof proof === 'string') {
      try {
        const { jwk } = JSON.parse(Buffer.from(proof.split('.')[0], 'base64url').toString());
        const id = jwk.x ?? jwk.n;
        dpopRequests.set(id, (dpopRequests.get(id) ?? 0) + 1);
      } catch {
        // Not a JWT: the provider says so.
      }
    }
    callback(req, res);
  });
  console.log(`LISTENING ${port}`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
