// oidc-provider (panva), configured as a client-credentials authorization server
// for the conformance suite in tests/tests/conformance.rs.
//
// Usage: node server.mjs <config.json>
// The config names the clients; private_key_jwt clients carry a public key in PEM
// form, turned into a JWK here. The server listens on a free loopback port and
// prints `LISTENING <port>` once it accepts requests; it stops when its stdin
// closes, so a crashed test run leaves no server behind.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const SCOPE = config.scope;
const RESOURCE = config.resource;
// oidc-provider refuses to introspect JWT access tokens, so clients marked
// `opaque` get opaque ones (from a second resource) for the introspection test.
const OPAQUE_RESOURCE = config.opaque_resource;
const opaqueClients = new Set(config.clients.filter((c) => c.opaque).map((c) => c.client_id));

const clients = config.clients.map((c) => {
  const client = {
    client_id: c.client_id,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPE,
    token_endpoint_auth_method: c.token_endpoint_auth_method,
  };
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
    scopes: SCOPE.split(' '),
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'RS384', 'ES256', 'ES384', 'PS256'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Our client sends no `resource`: the FHIR server is the default audience.
        defaultResource: (ctx, client) => (opaqueClients.has(client.clientId) ? OPAQUE_RESOURCE : RESOURCE),
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          scope: SCOPE,
          audience: resourceIndicator,
          accessTokenFormat: resourceIndicator === OPAQUE_RESOURCE ? 'opaque' : 'jwt',
          accessTokenTTL: config.access_token_ttl,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(`LISTENING ${port}`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
