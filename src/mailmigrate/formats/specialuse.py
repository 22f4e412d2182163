"""Recognising special-use folders by name, for stores and servers that do not say (RFC 6154 attributes).

Localised names matter: a German Outlook user's "Gesendete Elemente" must land in the target's \\Sent
folder or the mail client will not find sent mail after the cutover.
"""

from __future__ import annotations

_NAMES = {
    "\\Sent": [
        "sent", "sent items", "sent messages", "sent mail", "sent-mail", "outbox sent",
        "gesendet", "gesendete objekte", "gesendete elemente", "gesendete nachrichten",
        "envoyés", "envoyes", "éléments envoyés", "messages envoyés",
        "inviati", "posta inviata", "elementi inviati", "enviados", "elementos enviados", "enviado",
        "verzonden", "verzonden items", "verzonden berichten", "odeslané", "odeslaná pošta", "odeslane",
        "itens enviados", "mensagens enviadas", "wysłane", "elementy wysłane", "skickat", "sendt",
    ],
    "\\Drafts": [
        "drafts", "draft", "entwürfe", "entwurf", "brouillons", "bozze", "borradores", "concepten",
        "koncepty", "rascunhos", "kopie robocze", "utkast", "kladder",
    ],
    "\\Trash": [
        "trash", "deleted items", "deleted messages", "deleted", "bin", "papierkorb", "gelöschte elemente",
        "gelöschte objekte", "corbeille", "éléments supprimés", "cestino", "posta eliminata",
        "elementi eliminati", "papelera", "elementos eliminados", "prullenbak", "verwijderde items",
        "koš", "odstraněná pošta", "lixeira", "lixo", "itens excluídos", "kosz", "elementy usunięte",
        "papperskorgen", "papirkurv",
    ],
    "\\Junk": [
        "junk", "spam", "junk e-mail", "junk email", "junk mail", "bulk mail", "spamverdacht",
        "junk-e-mail", "courrier indésirable", "indésirables", "posta indesiderata", "correo no deseado",
        "ongewenste e-mail", "nevyžádaná pošta", "lixo eletrônico", "lixo eletronico", "wiadomości-śmieci",
        "skräppost",
    ],
    "\\Archive": ["archive", "archives", "archiv", "archivio", "archivo", "archief", "arquivo", "archiwum", "arkiv"],
}

_LOOKUP = {name: role for role, names in _NAMES.items() for name in names}

_CANONICAL = {"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash", "\\Junk": "Junk", "\\Archive": "Archive"}


def guess_special_use(name: str) -> str | None:
    """The role a folder's own (last-component) name suggests, or None."""
    return _LOOKUP.get(name.strip().casefold())


def canonical_name(special_use: str) -> str:
    return _CANONICAL.get(special_use, special_use.lstrip("\\"))
