// An independent OpenID Provider for Parley's tests: node-oidc-provider (panva, OpenID Certified),
// installed from npm and configured here — none of the protocol code is Parley's.
//
//   node provider.mjs CONFIG.json [--exit-with-stdin]
//   NODE_PROVIDER_CONFIG=CONFIG.json node provider.mjs
//
// CONFIG.json (written by tests/support/node_provider.py):
//   issuer        "http://127.0.0.1:PORT" (required)
//   port          listening port (required); host defaults to 127.0.0.1
//   audience      the API's resource indicator; its access tokens are RFC 9068 JWTs (required)
//   resource_scope  scopes of the API resource (default "chat.read chat.write")
//   clients       oidc-provider client metadata; "first_party": false asks for consent
//   accounts      { login: { sub?, name, email, email_verified, preferred_username, ... } };
//                 sub defaults to the login; sign in with the login, the sub or preferred_username
//   ttl           { AccessToken: 300, ... } overrides, in seconds
//   use_granted_resource  token requests without `resource` get the granted one (default true)
//   extra_token_claims    claims added to every JWT access token (default none)
//   jwks          private signing keys { keys: [...] } (default: a fresh RS256 key)
//   cookie_keys   keys signing the provider's cookies (default: a fixed test key)
//
// --exit-with-stdin: exit when stdin closes, so the provider never outlives the test run.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const configPath = args.find((arg) => !arg.startsWith('--')) ?? process.env.NODE_PROVIDER_CONFIG;
if (!configPath) {
  console.error('usage: node provider.mjs CONFIG.json [--exit-with-stdin]');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
for (const key of ['issuer', 'port', 'audience', 'clients', 'accounts']) {
  if (config[key] === undefined) {
    console.error(`${configPath}: "${key}" is required`);
    process.exit(2);
  }
}

const audience = config.audience;
const resourceScope = config.resource_scope ?? 'chat.read chat.write';
const useGrantedResource = config.use_granted_resource ?? true;
const ttl = {
  AccessToken: 300,
  AuthorizationCode: 60,
  ClientCredentials: 300,
  IdToken: 300,
  Interaction: 600,
  RefreshToken: 24 * 60 * 60,
  Session: 24 * 60 * 60,
  Grant: 24 * 60 * 60,
  ...config.ttl,
};

// Accounts: the session stores the sub; the login form accepts the login, sub or username.
const accountsBySub = new Map();
const subByLogin = new Map();
for (const [login, claims] of Object.entries(config.accounts)) {
  const sub = claims.sub ?? login;
  accountsBySub.set(sub, { ...claims, sub });
  for (const name of [login, sub, claims.preferred_username]) {
    if (name !== undefined) subByLogin.set(name, sub);
  }
}

function findAccount(_ctx, sub) {
  const claims = accountsBySub.get(sub);
  if (!claims) return undefined;
  return { accountId: sub, claims: async () => ({ ...claims }) };
}

function signingKeys() {
  if (config.jwks) return config.jwks;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'node-provider-rs256', alg: 'RS256', use: 'sig' }] };
}

// First-party clients (all but "first_party": false) are granted whatever they ask for, so the
// flow is login → redirect back; the others get the built-in consent page.
async function loadExistingGrant(ctx) {
  const { client, session, account, provider } = ctx.oidc;
  const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  if (client.metadata().first_party === false) return grant;
  grant ??= new provider.Grant({ clientId: client.clientId, accountId: account.accountId });
  const oidcScopes = [...ctx.oidc.requestParamOIDCScopes];
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
  const claims = [...ctx.oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const [indicator, resourceServer] of Object.entries(ctx.oidc.resourceServers)) {
    const scopes = [...ctx.oidc.requestParamScopes].filter((s) => resourceServer.scopes.has(s));
    if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
  }
  await grant.save();
  return grant;
}

// An Auth0-style `audience` parameter stands in for a missing `resource`.
async function defaultResource(ctx, _client, oneOf) {
  if (oneOf) return oneOf.includes(audience) ? audience : oneOf;
  const requested = ctx.oidc.params?.audience ?? ctx.oidc.body?.audience;
  return typeof requested === 'string' && requested ? requested : undefined;
}

async function getResourceServerInfo(_ctx, resourceIndicator) {
  if (resourceIndicator !== audience) {
    throw new Provider.errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
  }
  return {
    scope: resourceScope,
    audience,
    accessTokenFormat: 'jwt',
    accessTokenTTL: ttl.AccessToken,
    jwt: { sign: { alg: 'RS256' } },
  };
}

const provider = new Provider(config.issuer, {
  clients: config.clients,
  findAccount,
  jwks: signingKeys(),
  cookies: { keys: config.cookie_keys ?? ['parley-node-provider-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'given_name', 'family_name', 'picture', 'locale', 'updated_at'],
    email: ['email', 'email_verified'],
  },
  // The API's scopes are listed too, so that a client's registered `scope` can limit them.
  scopes: ['openid', 'offline_access', 'profile', 'email', ...resourceScope.split(' ')],
  conformIdTokenClaims: false, // profile and email claims go into the ID token
  extraParams: ['audience'],
  extraClientMetadata: { properties: ['first_party'] },
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 supports
  loadExistingGrant,
  // oidc-provider drops a requested offline_access unless prompt=consent is sent too (OpenID
  // Connect Core §11), so refresh tokens go to every client allowed the refresh_token grant.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  extraTokenClaims: async () => config.extra_token_claims ?? undefined,
  // Outgoing requests (back-channel logout) go to RPs on loopback, which oidc-provider's SSRF
  // guard refuses: drop its guarded dispatcher.
  fetch: (url, { dispatcher: _ssrfGuard, ...options }) => globalThis.fetch(url, options),
  ttl,
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource,
      getResourceServerInfo,
      useGrantedResource: async () => useGrantedResource,
    },
  },
});

// devInteractions' login form sets whatever was typed as the account id: map a known login to
// its sub, and answer an unknown one with access_denied instead of asking again forever.
const interactionResult = provider.interactionResult.bind(provider);
provider.interactionResult = (req, res, result, options) => {
  if (result?.login) {
    const sub = subByLogin.get(result.login.accountId);
    if (sub === undefined) {
      console.log(`login refused: unknown account ${JSON.stringify(result.login.accountId)}`);
      return interactionResult(req, res, {
        error: 'access_denied', error_description: 'unknown account',
      }, { ...options, mergeWithLastSubmission: false });
    }
    result = { ...result, login: { ...result.login, accountId: sub } };
  }
  return interactionResult(req, res, result, options);
};

for (const event of ['server_error', 'grant.error', 'backchannel.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (_ctx, error) => console.log(`${event}: ${error?.message} ${error?.error_description ?? ''}${error?.cause ? ` (${error.cause.message ?? error.cause})` : ''}`));
}
provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
  console.log(`backchannel logout sent to ${client.clientId} for ${accountId} (sid ${sid})`);
});

// oidc-provider validates static clients on first use; fail at start-up instead.
for (const { client_id: clientId } of config.clients) {
  try {
    if (!await provider.Client.find(clientId)) throw new Error('not found');
  } catch (error) {
    console.error(`client ${clientId}: ${error.message} ${error.error_description ?? ''}`);
    process.exit(1);
  }
}

const server = provider.listen(config.port, config.host ?? '127.0.0.1', () => {
  console.log(`node-oidc-provider listening on ${config.issuer}`);
});

let stopping = false;
function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  console.log(`stopping (${reason})`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (args.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
