"""Free webmail domains: an address there says nothing about the company a person works for.

The list is maintained here (add to it in a pull request) and extended per project with
`ingest.webmail_domains_extra` in refinery.toml.
"""

WEBMAIL_DOMAINS = frozenset(
    """
    gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr yahoo.de yahoo.es yahoo.it yahoo.co.in
    yahoo.com.br yahoo.co.jp ymail.com rocketmail.com hotmail.com hotmail.co.uk hotmail.fr
    hotmail.de hotmail.it hotmail.es outlook.com outlook.fr outlook.de live.com live.co.uk live.fr
    msn.com passport.com aol.com aim.com icloud.com me.com mac.com mail.com email.com gmx.com
    gmx.de gmx.net gmx.at gmx.ch web.de t-online.de freenet.de arcor.de protonmail.com proton.me
    pm.me tutanota.com tuta.io zoho.com zohomail.com yandex.com yandex.ru ya.ru mail.ru inbox.ru
    list.ru bk.ru rambler.ru qq.com 163.com 126.com yeah.net sina.com sohu.com aliyun.com
    naver.com daum.net hanmail.net rediffmail.com laposte.net orange.fr wanadoo.fr free.fr sfr.fr
    libero.it virgilio.it tiscali.it alice.it btinternet.com sky.com virginmedia.com talktalk.net
    ntlworld.com comcast.net verizon.net att.net sbcglobal.net bellsouth.net charter.net cox.net
    earthlink.net juno.com optonline.net shaw.ca rogers.com sympatico.ca bigpond.com
    optusnet.com.au telstra.com uol.com.br bol.com.br terra.com.br seznam.cz wp.pl o2.pl
    interia.pl onet.pl op.pl hushmail.com fastmail.com fastmail.fm mailinator.com
    guerrillamail.com 10minutemail.com temp-mail.org yopmail.com trashmail.com
    """.split()
)


def webmail_domains(extra: list[str]) -> frozenset[str]:
    """The list above plus a project's `ingest.webmail_domains_extra` (any case)."""
    return WEBMAIL_DOMAINS | {d.lower() for d in extra}
