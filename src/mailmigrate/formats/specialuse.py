"""Recognising special-use folders by name, for stores and servers that do not say (RFC 6154 attributes).

Localised names matter: a German Outlook user's "Gesendete Elemente" must land in the target's \\Sent
folder or the mail client will not find sent mail after the cutover.  Names are compared after Unicode
NFC normalisation and case folding, because macOS clients write decomposed accents ("e" + U+0301) and
servers differ in case ("SENT", "Sent Items", "sent-mail").

Only a folder at the top level or directly under INBOX is guessed: "Projects/Sent" is an ordinary folder
somebody named, not the account's sent mail.
"""

from __future__ import annotations

import unicodedata

_NAMES = {
    "\\Sent": [
        # English (Outlook, Apple Mail, Gmail, Thunderbird, Roundcube)
        "sent", "sent items", "sent messages", "sent mail", "sent-mail", "sent e-mail", "sentmail", "outbox sent",
        # German
        "gesendet", "gesendete objekte", "gesendete elemente", "gesendete nachrichten",
        # French
        "envoyés", "envoyes", "éléments envoyés", "elements envoyes", "messages envoyés", "messages envoyes",
        # Italian
        "inviati", "posta inviata", "elementi inviati", "messaggi inviati",
        # Spanish
        "enviados", "elementos enviados", "enviado", "correo enviado", "mensajes enviados",
        # Dutch
        "verzonden", "verzonden items", "verzonden berichten",
        # Czech
        "odeslané", "odeslaná pošta", "odeslane", "odeslana posta", "odeslané položky",
        # Portuguese
        "itens enviados", "mensagens enviadas", "enviadas", "correio enviado",
        # Polish
        "wysłane", "wyslane", "elementy wysłane", "wiadomości wysłane",
        # Nordic
        "skickat", "skickade objekt", "sendt", "sendte elementer", "sendte", "lähetetyt",
    ],
    "\\Drafts": [
        "drafts", "draft", "entwürfe", "entwurf", "brouillons", "brouillon", "bozze", "borradores", "borrador",
        "concepten", "koncepty", "rozepsané", "rascunhos", "rascunho", "kopie robocze",
        "wersje robocze", "utkast", "kladder", "kladde", "luonnokset",
    ],
    "\\Trash": [
        "trash", "deleted items", "deleted messages", "deleted", "bin", "papierkorb", "gelöschte elemente",
        "gelöschte objekte", "gelöschte nachrichten", "corbeille", "éléments supprimés", "elements supprimes",
        "messages supprimés", "cestino", "posta eliminata", "elementi eliminati", "papelera",
        "elementos eliminados", "elementos borrados", "prullenbak", "verwijderde items", "verwijderde berichten",
        "koš", "odstraněná pošta", "odstraněné položky", "lixeira", "lixo", "itens excluídos",
        "itens eliminados", "kosz", "elementy usunięte", "papperskorgen", "borttagna objekt", "papirkurv",
        "slettede elementer", "roskakori",
    ],
    "\\Junk": [
        "junk", "spam", "junk e-mail", "junk email", "junk mail", "bulk mail", "spamverdacht", "junk-e-mail",
        "courrier indésirable", "courrier indesirable", "indésirables", "pourriel", "posta indesiderata",
        "correo no deseado", "correo electrónico no deseado", "ongewenste e-mail", "ongewenste mail",
        "nevyžádaná pošta", "nevyzadana posta", "lixo eletrônico", "lixo eletronico", "lixo electrónico",
        "correio eletrônico não solicitado", "wiadomości-śmieci", "niechciane", "skräppost", "søppelpost",
        "uønsket e-mail", "roskaposti",
    ],
    "\\Archive": ["archive", "archives", "archiv", "archivio", "archivo", "archief", "arquivo", "archiwum", "arkiv",
                  "archivované", "archivováno"],
}


def _norm(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip().casefold()


_LOOKUP = {_norm(name): role for role, names in _NAMES.items() for name in names}

_CANONICAL = {"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash", "\\Junk": "Junk", "\\Archive": "Archive"}


def guess_special_use(name: str | tuple[str, ...]) -> str | None:
    """The role a folder's name suggests, or None.

    ``name`` is a folder's last component ("Gesendete Elemente") or a whole FolderPath; a path counts only
    at the top level or directly under INBOX ("INBOX", "Sent"), never deeper.
    """
    if isinstance(name, tuple):
        if len(name) == 2 and name[0].upper() == "INBOX":
            name = name[1]
        elif len(name) == 1 and name[0].upper() != "INBOX":
            name = name[0]
        else:
            return None
    return _LOOKUP.get(_norm(name))


def canonical_name(special_use: str) -> str:
    """The folder name mailmigrate creates for a role the target lacks ("\\Sent" -> "Sent")."""
    return _CANONICAL.get(special_use, special_use.lstrip("\\"))
