"""Choosing a server endpoint by security policy and mode: pure functions, no network.

The agent never falls back to security None on its own: ``choose_endpoint`` returns an endpoint
that matches the config or raises ``EndpointChoiceError`` with a message that lists what the
server does offer and how to proceed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import ua
from asyncua.crypto import security_policies

from connectors.opcua.config import OpcUaSecurity
from edge_agent.core.errors import EndpointChoiceError

POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"

STRENGTH: tuple[str, ...] = ("Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "Basic256Sha256")
"""Policies the agent speaks, strongest first, for ``policy: auto``.

Aes256_Sha256_RsaPss (OPC UA 1.04) is the only one with RSA-PSS signatures and OAEP-SHA256
key transport. Aes128_Sha256_RsaOaep (also 1.04) was added to replace Basic256Sha256, whose
OAEP-SHA1 padding and 256-bit derived keys are still considered safe but are the oldest of the
three. The deprecated Basic128Rsa15 and Basic256 (SHA-1 signatures) are never used.
"""

POLICY_CLASSES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
}

_MODES = {
    ua.MessageSecurityMode.None_: "None",
    ua.MessageSecurityMode.Sign: "Sign",
    ua.MessageSecurityMode.SignAndEncrypt: "SignAndEncrypt",
}


def policy_name(uri: str | None) -> str:
    """``Basic256Sha256`` for ``http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256``."""
    text = uri or ""
    return text.removeprefix(POLICY_PREFIX) if text.startswith(POLICY_PREFIX) else (text or "None")


def mode_name(mode: ua.MessageSecurityMode | int) -> str:
    """``SignAndEncrypt``, ``Sign`` or ``None``."""
    try:
        return _MODES[ua.MessageSecurityMode(mode)]
    except (ValueError, KeyError):
        return f"mode {int(mode)}"


@dataclass(frozen=True, order=True)
class Offer:
    """One policy + mode pair an endpoint offers."""

    policy: str
    mode: str

    def __str__(self) -> str:
        return "None" if self.policy == "None" and self.mode == "None" else f"{self.policy} {self.mode}"


def offer_of(endpoint: ua.EndpointDescription) -> Offer:
    """The policy and mode of one endpoint description."""
    return Offer(policy_name(endpoint.SecurityPolicyUri), mode_name(endpoint.SecurityMode))


def offered(endpoints: Sequence[ua.EndpointDescription]) -> list[Offer]:
    """Distinct policy + mode pairs of the opc.tcp endpoints, strongest first."""
    found = {offer_of(e) for e in endpoints if (e.EndpointUrl or "").startswith("opc.tcp://")}
    rank = {name: i for i, name in enumerate(STRENGTH)}
    return sorted(found, key=lambda o: (rank.get(o.policy, len(STRENGTH)), o.mode != "SignAndEncrypt", o))


def list_offers(offers: Sequence[Offer]) -> str:
    """``Basic256Sha256 SignAndEncrypt, Basic256Sha256 Sign`` (or ``nothing``)."""
    return ", ".join(str(o) for o in offers) or "nothing"


def choose_endpoint(endpoints: Sequence[ua.EndpointDescription], security: OpcUaSecurity) -> ua.EndpointDescription:
    """The endpoint to use for ``security``; ``EndpointChoiceError`` when the server offers none that fits.

    ``policy: auto`` takes the strongest policy of ``STRENGTH`` offered in the configured mode.
    A server offering only None while the config asks for security is refused with how to allow
    None explicitly; the agent never downgrades by itself.
    """
    usable = [e for e in endpoints if (e.EndpointUrl or "").startswith("opc.tcp://")]
    offers = offered(usable)
    shown = list_offers(offers)
    by_offer = {offer_of(e): e for e in reversed(usable)}  # the first endpoint of each pair wins
    if not security.enabled:
        wanted = Offer("None", "None")
        if wanted in by_offer:
            return by_offer[wanted]
        raise EndpointChoiceError(
            f"the config says security: none, but the server does not offer security None; it offers {shown}. "
            "Fix: remove security (the agent then uses the strongest policy offered) and trust the server's certificate"
        )
    secure = [o for o in offers if o.policy != "None"]
    if not secure:
        raise EndpointChoiceError(
            "the server offers only security None (no signing, no encryption), and the agent does not turn "
            "security off by itself. Fix: enable Basic256Sha256 or better on the server, or, only on a trusted "
            "network, write security: none in this machine's config",
            only_none=True,
        )
    candidates = list(STRENGTH) if security.policy == "auto" else [security.policy]
    for policy in candidates:
        endpoint = by_offer.get(Offer(policy, security.mode))
        if endpoint is not None:
            return endpoint
    if security.policy == "auto":
        speakable = [o for o in secure if o.policy in POLICY_CLASSES]
        if not speakable:
            asked = f"none of the policies the agent speaks ({', '.join(STRENGTH)})"
            fix = "enable one of them on the server"
        else:
            asked = f"no supported policy in mode {security.mode}"
            fix = f"set security.mode: {speakable[0].mode}, or enable {security.mode} on the server"
    else:
        asked = f"{security.policy} {security.mode}"
        choices = [str(o) for o in secure if o.policy in POLICY_CLASSES]
        fix = (
            f"set security.policy and security.mode to one of: {', '.join(choices)} (or policy: auto)"
            if choices
            else f"enable one of {', '.join(STRENGTH)} on the server"
        )
    raise EndpointChoiceError(f"the server does not offer {asked}; it offers {shown}. Fix: {fix}")


def user_token_types(endpoint: ua.EndpointDescription) -> set[ua.UserTokenType]:
    """The kinds of login the endpoint accepts (anonymous, user name, certificate, issued token)."""
    return {policy.TokenType for policy in endpoint.UserIdentityTokens or []}


def token_names(types: set[ua.UserTokenType]) -> str:
    """``anonymous, user name`` for people."""
    names = {
        ua.UserTokenType.Anonymous: "anonymous",
        ua.UserTokenType.UserName: "user name and password",
        ua.UserTokenType.Certificate: "X.509 user certificate",
        ua.UserTokenType.IssuedToken: "issued token",
    }
    return ", ".join(names.get(t, str(t)) for t in sorted(types, key=int)) or "none"
