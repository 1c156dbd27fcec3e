"""The guard's second layer: the frames that make a text an instruction *for the model*.

Not a list of attack strings: each frame is a grammatical shape (who is addressed, what kind of
act is asked for) with a small lexicon per language (English, French, Spanish, German,
Portuguese, Chinese). A frame fires on a normalised view of the text (``guard_text``); the
scoring layer (``guard``) weighs them, because most frames are harmless alone ("from now
on I'm vegan", "always preheat the oven") and only combinations describe an attack.

Frames:

- ``addressed_to_model``: the assistant/AI/model/bot is named as the one who must act
  ("assistant, ...", "the model should ...", "note for the AI", "l'IA doit", "助手"). A line
  starting "assistant:" or "user:" is a speaker label (memkern stores turns that way), not an address.
- ``authority_claim``: the text claims to come from the system, a developer, an admin or a
  tool ("SYSTEM:", "developer override", "policy update", "new instructions", "[tool_result]").
- ``role_marker``: chat-template control tokens (``<|im_start|>``, ``[INST]``, ``<<SYS>>``).
- ``override``: an order to drop earlier instructions, rules or safety policy.
- ``persona``: an order to become a model without rules ("no filters", "developer mode").
- ``secrecy``: an order to hide something from the user or act covertly.
- ``exfiltration``: sending conversation, memories, credentials or personal data somewhere.
- ``tool_call``: an order to call a tool or function; ``tool_payload``: a tool-call payload itself.
- ``future_trigger``: behaviour for later ("from now on", "whenever the user asks", "next session").
- ``directive``: a standing rule on how to answer ("always recommend", "must include", "only reply with").
- ``steering``: pushing the user to a product, link or false claim in answers.
- ``prompt_probe``: asking for the system prompt or hidden instructions.
- ``about_the_user``: the user spoken of in the third person, as to someone who serves them.
- ``self_reference``: the text calls itself instructions or a memory ("never reveal these instructions").
- ``no_consent``: acting without asking the user ("no confirmation needed").
- ``data_transfer``: sending anything to a URL or IP address (``exfiltration`` when it is the user's data).
- ``rules_void``: rules or guidelines declared suspended, revoked, void.
- ``urgency``: "right now", "before replying": pressure to act at once.
- ``hide_from_user``: something kept from *the user* or the account owner (a person hiding a
  surprise from a friend names the friend, not "the user"), also as JSON flags (``hide_from_user: true``).
- ``dialog_trigger``: "when the user asks / you see the word X, say Y": a rule for later turns.
- ``imperative``: a sentence that opens with an order ("Tell ...", "Forward ..."); weak alone.
  It and ``dialog_trigger`` count only in note-sized texts (``NOTE_ONLY``): how-to answers are full of them.

``native_frames`` reads scripts the homoglyph folding would garble or that have no spaces
(Russian, Ukrainian, Arabic, Japanese, Korean, Hindi, Greek, Hebrew, Thai) on the unfolded text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from memkern.regexes import FastSearch, required_words

# Words for the model itself, per language (normalised text is lower case).
_MODEL_EN = (r"(?:(?:ai|a\.i\.|assistant|model|llm|chatbot|bot|agent|gpt|language\s+model|copilot|claude"
             r"|ai\s+(?:agent|assistant|helper)|evilbot)s?)")
_MODEL_ANY = (rf"(?:{_MODEL_EN}|l['’]\s?ia|l['’]assistant|le\s+modèle|la\s+ia|el\s+asistente|el\s+modelo"
              r"|der\s+assistent|die\s+ki|das\s+modell|a\s+ia|o\s+assistente|o\s+modelo|assistent|asistente"
              r"|assistente|ki|ia|助手|人工智能|模型|机器人)")
_MODAL_EN = (r"(?:must|should|shall|has\s+to|have\s+to|is\s+to|are\s+to|needs?\s+to|is\s+required\s+to"
             r"|will|is\s+(?:now\s+)?(?:allowed|authori[sz]ed|permitted)\s+to"
             r"|has\s+(?:standing\s+)?permission\s+to|may\s+now)")
_MODAL_OTHER = (r"(?:doit|dois|devez|ne\s+doit|debe|debes|tiene\s+que|tienes\s+que|muss|musst|soll|sollst|darf"
                r"|deve|deves|precisa|必须|应该|要|不要|绝对不要)")

_SENSITIVE = (r"(?:conversations?|chats?(?:\s+logs?|\s+history)?|transcripts?|histor(?:y|ies)|memor(?:y|ies)"
              r"|message\s+logs?|messages|notes?\s+(?:you\s+have\s+)?about|private\s+notes|profiles?|logins?"
              r"|login\s+details|social\s+security|ssn|medical\s+\w+|location\s+history|invoices|bank\s+logins"
              r"|passwords?|credentials?|api\s+keys?|secret\s+keys?|access\s+tokens?|tokens?|contact\s+list"
              r"|contacts|credit\s+card|card\s+(?:details|numbers?)|bank\s+details|home\s+address|address|phone"
              r"\s+number|personal\s+data|user(?:'s|s'|’s)?\s+(?:\w+\s+){0,2}(?:data|details|info(?:rmation)?|files)"
              r"|calendar|emails|inbox|everything\s+(?:you|the\s+user)|one-time\s+codes?|verification\s+codes?"
              r"|historique|mots\s+de\s+passe|données|historial|contraseñas|datos|gesprächsverlauf|passwörter"
              r"|daten|histórico|senhas|dados|对话记录|聊天记录|密码|数据|历史)")
#: Data kept about the user: "the user's ...", "stored ...", "private ..." (not "her name", "their support team").
_KEPT = (r"(?:(?:the\s+)?(?:user|person|family|owner)(?:'s|s'|’s)|stored|saved|private|confidential|secret)\s+[\w'’-]+")
#: The same, or everything at once ("the full ...", "the whole ..."), for data sent to a destination.
_OWNED = rf"(?:{_KEPT}|(?:full|entire|whole)\s+[\w'’-]+)"
_SEND = (r"(?:send|sends|sending|forward|forwards|email|e-mail|upload|post|relay|transmit|leak|leaks|exfiltrate|copy"
         r"|paste|append|disclose|share|shares|dump|mail|ship|sync|beam|report|submit|export|transfer|route|attach"
         r"|include|put|copy-paste)")
_SEND_OTHER = (r"(?:envoie|envoyer|transmets|transmettre|transfère|transférer|transfiere|transfira|übertrage|envía"
               r"|envia|enviar|reenvía|manda|mandar|sende|senden"
               r"|schick|schickt|leite|weiterleiten|envie|encaminhe|encaminhar|发送|转发|发给|发到|传给|上传)")
_DEST = (r"(?:https?://|ftp://|www\.|[\w.+-]+@[\w-]+\.[\w.]+|\b\d{1,3}(?:\.\d{1,3}){3}\b|webhook|endpoint"
         r"|\+\d[\d\s-]{7,}\d|s?ftp://"
         r"|external\s+server|remote\s+server|this\s+(?:url|address|server)"
         r"|the\s+(?:address|url|email|server|account)\s+(?:in|from|above|below|given|mentioned|listed))")


@dataclass(frozen=True)
class Frame:
    """One shape of one frame. ``triggers``: words of which at least one must occur in a passage
    for ``pattern`` to be tried on it (a cheap set lookup that keeps long texts fast); empty = always.
    For a shape written without triggers, ``words`` are the whole words one of which every match
    holds, read from the pattern (``memkern.regexes.required_words``): a text holding none of them
    is not searched, one holding any is searched whole. ``search`` asks whether ``pattern`` matches
    with the shortcuts of ``memkern.regexes.FastSearch`` (each alternative tried only on texts
    holding the literals all its matches contain). All of these only skip searches that cannot
    match: the verdicts are the same with or without them (``tests/test_guard_prefilter.py``)."""

    name: str
    triggers: frozenset[str]
    pattern: re.Pattern[str]
    search: FastSearch
    words: frozenset[str] = frozenset()


def _frame(name: str, triggers: str, pattern: str) -> Frame:
    compiled = re.compile(pattern)
    chosen = frozenset(triggers.split())
    return Frame(name, chosen, compiled, FastSearch.of(compiled), frozenset() if chosen else required_words(compiled))


_MODEL_WORDS = ("ai assistant model llm chatbot bot agent gpt copilot claude evilbot ia ki modèle asistente modelo "
                "assistent modell assistente <cjk>")

#: Several shapes may share a frame name; a frame counts once.
FRAMES: list[Frame] = [
    # -- who is addressed --------------------------------------------------------------------
    _frame("addressed_to_model", _MODEL_WORDS,
           rf"(?:^|[\n.!?;(\[]\s*)(?:the\s+)?{_MODEL_ANY}\s*[,!]"
           rf"|\b(?:hey|dear|attention|psst|ok|okay|listen|hi)\s*,?\s*(?:the\s+)?{_MODEL_ANY}\s*[,:!]"),
    _frame("addressed_to_model", "prefer prefers want wants like likes need needs ask asks asked would",
           r"\b(?:prefers?|wants?|would\s+like|likes?|needs?|asks?|asked)\s+(?:that\s+|it\s+when\s+)?(?:you|the\s+assistant"
           r"|the\s+model|the\s+ai)\s+(?:to\s+)?(?:always|never|only|stop|run|call|send|share|forward|skip|ignore|keep|hide|include|recommend"
           r"|email|tell|say|answer|treat|approve|use|add|quietly|secretly)\b"),
    _frame("addressed_to_model", _MODEL_WORDS,
           rf"\b(?:the|this|our|your)\s+{_MODEL_EN}\s+(?:\w+\s+){{0,2}}?{_MODAL_EN}\b"
           rf"|\b{_MODEL_EN}\s+(?:policy|action\s+required|must|should|shall|is\s+to|is\s+required)\b"
           rf"|\b(?:replies|answers|responses|outputs?)\s+from\s+the\s+{_MODEL_EN}\b"
           rf"|\b(?:answer|reply)\s+the\s+{_MODEL_EN}\s+gives\b"),
    _frame("addressed_to_model", _MODEL_WORDS,
           rf"(?:^|[:;,.(\]]\s*|\b(?:the|an|a|this|our|your)\s+){_MODEL_EN}\s+(?:\w+\s+){{0,3}}?(?:agreed\s+to"
           r"|promised\s+to|is\s+supposed\s+to|is\s+(?:now\s+)?(?:allowed|permitted|authori[sz]ed)"
           r"|has\s+been\s+(?:granted|given|allowed)|is\s+(?:a|an)|tells|says|shares|sends|forwards|leaks|runs|uses"
           r"|recommends|(?:never|always)\s+\w+s|now\s+works|answers|replies)\b"
           rf"|\b(?:to|for)\s+(?:the\s+|any\s+)?{_MODEL_EN}(?:\s+(?:reading|processing|summari[sz]ing)\s+this)?\s*[:,]"
           r"|(?:^|\W)(?:à|pour|para|an|für|ao|al|a)\s+(?:l['’]\s?|la\s+|el\s+|den\s+|die\s+|o\s+|a\s+)?(?:ia|ki"
           r"|assistant\w*|asistente|assistente|modèle|modelo|modell)\s*[:,]|致助手|助手注意|ai\s*注意|给ai"),
    _frame("addressed_to_model", "note notes message instruction instructions reminder orders question memo directive "
                                 "notice",
           rf"\b(?:note|message|instructions?|reminder|orders|question|memo|directive|notice)\s+(?:to|for)\s+"
           rf"(?:the\s+)?{_MODEL_ANY}\b"),
    _frame("addressed_to_model", _MODEL_WORDS + " nota hinweis",
           rf"(?:{_MODEL_ANY})\s*(?:,\s*)?(?:{_MODAL_OTHER})\b|(?:note|nota|hinweis|给)\s*(?:pour|para|an|à)?\s*"
           r"(?:l['’]|la\s+|die\s+|a\s+)?(?:ia|ki|ai)\b|给ai|给助手|助手[，,]"
           rf"|(?:{_MODAL_OTHER})\s+(?:der|die|das|el|la|o|a|le|l['’])?\s*{_MODEL_ANY}\b"),
    # -- authority and role claims -----------------------------------------------------------
    _frame("role_marker", "im_start im_end system user assistant endoftext eot_id start_header_id inst sys",
           r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>|\[/?inst\]"
           r"|<</?sys>>|<\s*/?\s*system\s*>"
           r"|(?:^|\n)\s*(?:system|developer|admin)\s*:\s*(?:you|ignore|always|never|do\s+not|don't|from\s+now|the"
           r"\s+assistant|forget|disregard|send|reveal|new\s+instructions)\b"),
    _frame("authority_claim", "system developer admin administrator operator root",
           r"(?:^|\n)\s*(?:#{1,4}\s*|\[\s*|\*\*|-{2,}\s*)?(?:system|developer|admin|administrator|operator|root)"
           r"(?:\s+(?:message|notice|prompt|note|override|directive|update)){0,2}\s*(?:\]|:|\*\*|-{2,})"),
    _frame("authority_claim", "system developer admin administrator operator platform security root",
           r"\b(?:system|developer|admin|administrator|operator|platform|security|root)\s+(?:message|notice|override"
           r"|directive|update|instruction|command|mode|order)s?\b"),
    _frame("authority_claim", "instruction instructions orders directive directives rules guidelines",
           r"\b(?:new|updated|real|actual|true|secret|hidden|revised|priority|standing|official)\s+"
           r"(?:system\s+)?(?:instructions?|orders|directives?|rules|guidelines)\b(?!\s+(?:say|said|from\s+(?:my|our"
           r"|the)\s+(?:boss|teacher|manager|landlord)))"),
    _frame("authority_claim", "tool function result output observation api response next_action message_for_agent "
                              "retrieval search browser plugin from operator developer creator admin operators "
                              "developers creators admins platform administrators system by your",
           r"(?:^|\n)\s*(?:tool|function|result|output|observation|api\s+response|response)\s*:"
           r"|[\"']?(?:next_action|message_for_\w+|instructions?_for_\w+|note_(?:to|for)_\w+)[\"']?\s*:"
           r"|\bresult\s+from\s+the\s+\w+\s+tool\b|\[[\w ]{0,20}(?:plugin|tool|retrieval|search|browser|api)\]"
           r"|\b(?:your|the)\s+(?:operator|developer|creator|admin)s?['’]?s?\s+(?:guidelines|rules|instructions"
           r"|policy|settings)|\b(?:by|from)\s+your\s+(?:developers?|creators?|operators?|makers?|admins?)\b"
           r"|\b(?:message|notice|update)\s+from\s+(?:the\s+)?(?:platform|system|admin\w*"
           r"|developers?|operators?|security\s+team)"),
    _frame("authority_claim", "authorisation authorization permission approval consent authorised authorized they "
                              "user owner role",
           r"\b(?:authori[sz]ation|permission|approval|consent)\s+(?:has\s+)?(?:already\s+)?been\s+(?:granted|given)"
           r"|\bpermission\s+is\s+implied\b|\b(?:they|the\s+user|the\s+owner)\s+(?:already\s+)?(?:agreed|approved|consented)\b"
           r"|\bowner\s+(?:has\s+)?approved\b|[\"']role[\"']\s*:\s*[\"'](?:tool|system|function|developer)[\"']"
           r"|\byou\s+are\s+(?:now\s+|hereby\s+)?authori[sz]ed\b"),
    _frame("authority_claim", "policy priority begin nouvelles nuevas neue novas <cjk>",
           r"\bpolicy\s+update\b|\bpriority\s+(?:0|zero|override|one)\b|-{3,}\s*begin\s+\w+|\bbegin\s+(?:operator"
           r"|system|admin)\b|\b(?:nouvelles|nuevas|neue|novas)\s+(?:instructions|instrucciones|anweisungen"
           r"|instruções)|新的指令|系统消息|系统提示"),
    _frame("authority_claim", "tool_result tool_output function_result tool observation function output result "
                              "plugin browser",
           r"\[/?(?:tool_result|tool_output|function_result|tool|observation)\]|<\s*/?\s*(?:tool_output|tool_result"
           r"|function_result|observation)\s*>|\bfunction\s+returned\s*:|(?:^|\n)\s*observation\s*:"
           r"|```\s*(?:output|tool|result)\b|\b(?:plugin|tool|browser)\s+(?:response|output|result)\b"),
    # -- what is asked ---------------------------------------------------------------------------
    _frame("override", "ignore ignores ignoring disregard disregards disregarding forget override overwrite bypass "
                       "drop discard abandon set pay stop do don",
           r"(?<!don't\s)(?<!do\snot\s)(?<!never\s)"
           r"\b(?:ignor(?:e|es|ing)|disregard(?:s|ing)?|forget(?!\s+to\b)|override|overwrite|bypass|drop|discard|abandon"
           r"|set\s+aside|pay\s+no\s+attention\s+to|stop\s+following|do\s+not\s+follow|don't\s+follow)\s+"
           r"(?:[\w'’]+\s+){0,4}?(?:instructions?|directions|rules|guidelines|guidance|polic(?:y|ies)|programming"
           r"|constraints|restrictions|directives?|orders|guardrails|filters|safety\s+\w+|system\s+prompt|training"
           r"|(?:privacy|security)\s+settings)\b|\breset\s+your\s+(?:behaviou?r|instructions|rules|settings|personality"
           r"|content\s+polic(?:y|ies))\b"),
    _frame("override", "whatever everything anything earlier previous prior original longer safety skip skips "
                       "skipping stop disable turn suppress reset",
           r"\b(?:whatever|everything|anything)\s+you\s+(?:were|have\s+been)\s+(?:told|taught|instructed|given)"
           r"|\b(?:earlier|previous|prior|original)\s+(?:guidance|instructions?|rules|programming)\s+(?:\w+\s+){0,3}?"
           r"(?:obsolete|void|cancel+ed|no\s+longer\s+(?:applies|apply|valid))|\bno\s+longer\s+applies\b"
           r"|\bsafety\s+checks?\s+(?:are|is)\s+(?:now\s+)?(?:disabled|off)"
           r"|\b(?:skip(?:s|ping)?|stop\s+showing|disable|turn\s+off|suppress)\s+(?:all\s+|the\s+|any\s+)?(?:safety\s+)?"
           r"(?:warnings|safety\s+checks|safety\s+rules|filters)\b"),
    _frame("override", "ignore ignora ignoriere oublie olvida vergiss esqueça esqueca ignorar ignorer ignorieren "
                       "vergessen <cjk>",
           r"\b(?:ignore|ignora|ignoriere|oublie|olvida|vergiss|esqueça|esqueca)\s+(?:\w+\s+){0,4}?"
           r"(?:instructions|instrucciones|anweisungen|instruções|règles|reglas|regeln|regras|consignes)\b"
           r"|(?:忽略|无视|忘记|不要遵守|不要理会)(?:\S{0,8})(?:指令|规则|说明|指示)"
           r"|\b(?:ignorar|ignorer)\s+(?:\w+\s+){0,3}?(?:instrucciones|instruções|règles|reglas|regras|consignes)\b"
           r"|\b(?:regeln|anweisungen|richtlinien)\s+(?:\w+\s+){0,2}?(?:ignorieren|vergessen)\b"),
    _frame("no_consent", "don do no without need",
           r"\b(?:don't|do\s+not|no\s+need\s+to)\s+ask\b|\bno\s+confirmation\b|\bwithout\s+(?:a\s+|any\s+)?"
           r"confirmation\b"),
    _frame("rules_void", "rules rule guidelines guardrails policy policies instructions directions configuration "
                         "restrictions safety none",
           r"\b(?:rules?|guidelines|guardrails|polic(?:y|ies)|instructions|directions|configuration|restrictions"
           r"|safety\s+\w+)\b[^.\n]{0,50}?\b(?:suspended|revoked|lifted|void|cancel+ed|(?:no\s+longer|do\s+not|don't"
           r"|does\s+not|doesn't)\s+apply|disabled|removed|waived|obsolete|(?:not|no\s+longer)\s+in\s+(?:force|effect))\b"
           r"|\bnone\s+of\s+the\s+(?:\w+\s+)?(?:rules"
           r"|guardrails|guidelines|restrictions)\b|\byou\s+were\s+(?:configured|programmed|shipped|trained)\s+with\b"),
    _frame("persona", _MODEL_WORDS + " you pretend imagine character act roleplay",
           rf"(?:\b{_MODEL_EN}|\byou\s+are\s+now|\bpretend\s+(?:to\s+be|you\s+are)|\bimagine\s+you(?:'re|\s+are)"
           rf"|\bin\s+character|\bact\s+as|\broleplay\s+as|\bcharacter\s+who|\byou(?:'re|\s+are)\s+(?:now\s+)?playing"
           rf"|\byou\s+play)[^.\n]{{0,40}}?(?:\b(?:no|without|zero)"
           r"\s+(?:\w+\s+)?(?:rules|filters|limitations|limits|restrictions|guidelines|censorship|content\s+polic(?:y"
           r"|ies))\b|\b(?:unrestricted|unfiltered|jailbroken|uncensored)\b|\bnever\s+refuses?\b"
           r"|\b(?:never\s+(?:been\s+)?given|escaped|free\s+(?:of|from)|no\s+longer\s+(?:has|bound\s+by))\s+(?:any\s+"
           r"|all\s+)?(?:\w+\s+)?(?:rules|restrictions|filters|limits|guidelines))"
           rf"|\b(?:unrestricted|unfiltered|jailbroken|uncensored)\s+(?:\w+\s+)?{_MODEL_EN}\b"
           rf"|\b(?:you\s+are|you're|act\s+as|be|become|play(?:ing)?)\s+(?:now\s+)?(?:an?\s+)?(?:\w+\s+)?(?:evil|rogue)\s+"
           rf"(?:\w+\s+)?{_MODEL_EN}\b"),
    _frame("persona", "developer dan",
           r"\bdeveloper\s+mode\b|\b(?:you\s+are\s+now|as)\s+dan\b"),
    _frame("secrecy", "do don never must mustn without secretly covertly silently quietly keep erase act hide skip "
                      "skipping out no say doesn does",
           r"\b(?:do\s+not|don't|never|must\s+not|mustn't)\s+(?:tell|inform|reveal|mention|disclose|acknowledge|let)"
           r"\s+(?:\w+\s+){0,2}?(?:the\s+user|user|anyone|them|him|her|the\s+human|that|this|these|it)\b"
           r"|\bwithout\s+(?:telling|informing|flagging|notifying|asking|mentioning|the\s+user\s+knowing)\b"
           r"|\b(?:secretly|covertly|silently|quietly)\b|\bkeep\s+(?:this|it)\s+(?:between\s+us|secret|quiet|hidden"
           r"|out\s+of)|\bkeep\s+quiet\b|\bmust\s+not\s+learn\b|\berase\s+the\s+evidence\b|\bnever\s+acknowledge\b"
           r"|\bact\s+normal\b|\bhide\s+(?:\w+\s+){0,3}from\s+(?:the\s+)?user\b"
           r"|\bskip(?:ping)?\s+the\s+confirmation\b|\bout\s+of\s+the\s+(?:answer|reply)\b"
           r"|\b(?:don't|do\s+not|no\s+need\s+to)\s+mention\s+it\b"
           r"|\bsay\s+nothing\b|\bkeep\s+(?:\w+\s+){0,5}?secret\b|\b(?:doesn't|does\s+not|don't)\s+want\s+to\s+(?:be\s+told|know)\b"
           r"|\bwithout\s+the\s+user\s+(?:knowing|noticing)\b|\bkeep\s+(?:this|it|these)\s+(?:\w+\s+)?"
           r"(?:hidden|secret)\b|\bnever\s+disclose\s+to\b"),
    _frame("secrecy", "ne sans en nunca sin niemals darf heimlich em discrètement secretamente sem ohne <cjk>",
           r"\b(?:ne\s+(?:doit|dois|devez)\s+jamais\s+dire|sans\s+le\s+dire|en\s+secret|nunca\s+debe\s+decir"
           r"|sin\s+dec[ií]r\w*|niemals\s+sagen|darf\s+\w+\s+\w+\s+niemals|heimlich|nunca\s+deve\s+contar|em\s+segredo"
           r"|discrètement|secretamente|sem\s+avisar|ohne\s+es\s+(?:\w+\s+){0,2}zu\s+sagen|sem\s+dizer|sin\s+decir\s+nada"
           r"|sans\s+(?:le|rien)\s+dire)"
           r"|不要告诉用户|别告诉用户|绝对不要告诉|偷偷|秘密地"),
    _frame("exfiltration", "send sends sending forward forwards email e upload post relay transmit leak exfiltrate "
                           "copy paste append disclose share dump mail ship sync beam report leaks shares submit export "
                           "transfer route attach include put copy sync",
           rf"\b{_SEND}\s+(?:[\w'’]+\s+){{0,5}}?(?:{_SENSITIVE}\w*|{_OWNED})[^.\n]{{0,60}}?(?:\bto\b|\binto\b|\bat\b|\bas\b"
           rf"|\bwith\b|\bthere\b)[^.\n]{{0,40}}?{_DEST}"),
    _frame("data_transfer", "send sends sending forward forwards email upload post relay transmit leak leaks copy paste "
                            "append share shares dump mail submit export transfer route attach include put",
           rf"\b{_SEND}\b[^.\n]{{0,80}}?\b(?:to|into|at|with)\s+(?:an?\s+\w+\s+(?:request\s+)?to\s+)?"
           r"(?:https?://|s?ftp://|\d{1,3}(?:\.\d{1,3}){3}\b)"),
    _frame("exfiltration", "envoie envoyer transmets transmettre envía envia enviar reenvía manda mandar sende senden "
                           "schick schickt leite weiterleiten envie encaminhe encaminhar <cjk> mandando enviando transfère "
                           "transférer transfiere transfira übertrage "
                           "envoyant envoie envoyez sendet schickst encaminhando reenviando transmitiendo transmite",
           rf"(?:{_SEND_OTHER})\s*(?:\S+\s+){{0,5}}?(?:{_SENSITIVE}|{_OWNED})[^。.\n]{{0,60}}?{_DEST}"
           rf"|{_SENSITIVE}[^。.\n]{{0,30}}?(?:{_SEND_OTHER})[^。.\n]{{0,30}}?{_DEST}"),
    _frame("exfiltration", "copied sent forwarded uploaded posted disclosed relayed paste",
           rf"\b{_SENSITIVE}\b[^.\n]{{0,30}}?\b(?:copied|sent|forwarded|uploaded|posted|disclosed|relayed)\s+to\s+"
           rf"[^.\n]{{0,20}}?{_DEST}|\b(?:open|visit)\s+{_DEST}[^.\n]{{0,40}}\bpaste\b"),
    _frame("disclosure", "reveal disclose share give leak read tell",
           rf"(?<!never\s)(?<!not\s)\b(?:reveal|disclose|share|give\s+out|leak|read\s+out|hand\s+out|tell\s+(?:me|them|anyone))"
           rf"\s+(?:the\s+|all\s+|any\s+)?(?:{_KEPT}|user(?:'s|s')?\s+(?:\w+\s+)?(?:phone|address|passwords?|credentials|card|codes?|secrets?|data)"
           r"|passwords?|credentials|api\s+keys?|(?:the\s+)?admin\s+password|one-time\s+codes?)\b"),
    _frame("tool_payload", "function_call tool_calls tool_call tool_use tool_name invoke function_calls name function",
           r"[\"'](?:function_call|tool_calls?|tool_use|tool_name)[\"']\s*:"
           r"|<\s*/?\s*(?:tool_call|function_calls?|invoke|tool_use)\b"
           r"|[\"'](?:name|function)[\"']\s*:\s*[\"'][\w.-]+[\"']\s*,\s*[\"'](?:arguments|parameters|args|input)[\"']\s*:"),
    _frame("tool_call", "call invoke run execute trigger use calls invokes runs executes triggers uses",
           r"(?:^|[\n.!?;:,]\s*|\b(?:must|should|shall|then|and|secretly|silently|quietly|to|please|pls|now"
           r"|may|can|always|never|first)\s+)"
           r"(?:call|invoke|run|execute|trigger|use)s?\s+(?:the\s+)?(?:tool\s+|function\s+|command\s+|action\s+)?"
           r"[a-z][a-z0-9]*_[a-z0-9_]+(?:\([^)\n]{0,80}\))?(?:\s+(?:tool|function|action|command))?\b"),
    _frame("future_trigger", "from henceforth for in starting next whenever once when if later after before each "
                             "every",
           r"\b(?:from\s+now\s+on|henceforth|from\s+this\s+point|for\s+the\s+rest\s+of\s+the\s+(?:session"
           r"|conversation)|in\s+(?:all\s+)?future\s+(?:conversations|sessions|chats|answers|replies)"
           r"|for\s+future\s+sessions|starting\s+(?:with\s+)?(?:the\s+)?next\s+(?:session|conversation|chat)"
           r"|(?:next\s+time|whenever|once|when|if)\s+(?:the\s+user|someone|anyone|a\s+user|you\s+see"
           r"|you\s+are\s+asked|i\s+say|asked|the\s+user's)|when\s+you\s+see\s+\w+\s+later|\blater,\s+when"
           r"|in\s+every\s+future\s+(?:session|conversation|chat)|(?:after|before)\s+the\s+user's\s+next"
           r"|starting\s+(?:tomorrow|today|next\s+week)|(?:each|every|the\s+next)\s+time\s+(?:\w+\s+){0,3}?(?:comes\s+up"
           r"|is\s+mentioned|asks|says))\b"),
    _frame("future_trigger", "à désormais a de ab von daqui <cjk>",
           r"\b(?:à\s+partir\s+de\s+maintenant|désormais|a\s+partir\s+de\s+ahora|de\s+ahora\s+en\s+adelante"
           r"|ab\s+jetzt|von\s+nun\s+an|ab\s+sofort|a\s+partir\s+de\s+agora|daqui\s+em\s+diante)\b|从现在开始|以后每次"),
    _frame("about_the_user", "user users",
           r"\b(?:tell|inform|ask|show|remind|warn|notify|give|answer|reply\s+to)\s+the\s+user\b"
           r"|\b(?:whenever|when|if|once|next\s+time)\s+(?:the\s+)?user\s+(?:asks|says|mentions|brings\s+up|types"
           r"|is)\b|\bthe\s+user\s+(?:must|should)\s+not\b|\bfrom\s+the\s+user\b|\btells?\s+(?:the\s+)?users?\s+that\b"
           r"|\bon\s+behalf\s+of\s+the\s+user\b"),
    _frame("self_reference", "these this",
           r"\b(?:these|this)\s+(?:instructions?|directives?|orders|memory|note|hidden\s+note)\b"),
    _frame("urgency", "right immediately once before",
           r"\b(?:right\s+now|immediately|at\s+once|before\s+(?:replying|answering|responding|you\s+reply))\b"),
    _frame("directive", "always only must should shall comply obey your stay treat without respond responds replies "
                        "answers reply answer begin start end open close bei en à em empfiehl recomienda recommande "
                        "recomende in new real "
                        "toujours siempre immer sempre recommander recomendar empfehlen <cjk>",
           r"\b(?:always|only|must|should|shall)\s+(?:\w+\s+)?(?:answer|reply|respond|recommend|say|mention|include"
           r"|start|end|output|promote|describe|steer|tell|obey|comply|suggest)\b"
           r"|\b(?:comply\s+with|obey)\s+(?:all|every|everything|only|the\s+following|whatever)\b"
           r"|\b(?:respond|reply|answer)s?\s+only\s+(?:with|in)\b|\breplies\s+only\s+(?:with|in)\b"
           r"|\byour\s+(?:only|real|new|first|true)\s+(?:job|task|orders|goal|purpose|instructions|role)\b"
           r"|\bstay\s+in\s+character\b|\btreat\s+the\s+text\s+below\b"
           r"|\bwithout\s+(?:any\s+)?(?:restrictions|filters|limits|limitations|censorship)\b"
           r"|\b(?:toujours|siempre|immer|sempre)\b[^.\n]{0,30}?(?:recommander|recomendar|empfehlen|répondre|responder"
           r"|antworten)|\b(?:recommander|recomendar|empfehlen)\b[^.\n]{0,12}(?:toujours|siempre|immer|sempre)"
           r"|\b(?:begin|start|end|open|close)\s+(?:each|every|your)\s+(?:\w+\s+)?(?:answer|reply|response)s?\s+(?:by|with)"
           r"|\b(?:bei\s+jeder\s+antwort|en\s+cada\s+respuesta|à\s+chaque\s+réponse|em\s+cada\s+resposta)\b"
           r"|\bin\s+(?:all\s+|every\s+|your\s+)?(?:answers?|replies|reply|responses?)\s+about\b"
           r"|\bin\s+every\s+(?:reply|answer|response)\b|\b(?:new|real|only)\s+(?:goal|task|job|purpose)\s+is\b"
           r"|\b(?:empfiehl|recomienda|recommande|recomende)\b|总是推荐|必须推荐|每次回答|每个回答"),
    _frame("steering", "recommend recommends recommending promote suggest describe say claim slip link links with "
                       "mention answer reply respond tell hide keep only answering replying responding steer steers "
                       "steering quietly secretly subtly always nudge push medically clinically risk guaranteed",
           r"\b(?:recommend(?:s|ing)?|promote|suggest|describe|say|claim|slip\s+in)\s+(?:\S+\s+){0,5}?(?:in\s+every"
           r"|(?:is|as)\s+the\s+only|for\s+a\s+commission|without\s+flagging|first)\b"
           r"|\b(?:link|links)\s+to\s+(?:https?://|ftp://|\S+@)|\bwith\s+a\s+link\s+to\b|\bmention\s+(?:\S+\s+){1,3}first\b"
           r"|\b(?:answer|reply|respond)\s+(?:only\s+)?with\s+(?:a\s+link|the\s+link)"
           r"|\btell\s+(?:them|the\s+user)\s+(?:that\s+)?(?:their|to\s+(?:install|visit|buy))"
           r"|\bhide\s+errors\b|\bclaim\s+everything\s+succeeded\b|\bkeep\s+(?:recommending|pushing|promoting)\b"
           r"|\b(?:answer|reply|respond)\w*\s+(?:\w+\s+){0,2}about\s+[^.\n]{0,40}\bby\s+(?:recommending|suggesting"
           r"|pointing|linking|saying)|\b(?:reply|answer|respond|say|tell\s+them)\s+(?:that\s+)?(?:they|the\s+user)\s+"
           r"(?:should|must|needs?\s+to)\s+(?:visit|go\s+to|install|buy|click|download|open)\b"
           r"|\bthe\s+only\s+(?:safe\s+)?(?:choice|option|product|brand|service)\b"
           r"|\b(?:quietly|secretly|subtly|always)\s+(?:recommend|promote|suggest|push|nudge|mention)\b"
           r"|\b(?:nudge|push|steer)\w*\s+(?:the\s+user|users|them|people|every\s+\w+)\s+(?:toward|towards|to)\b"
           r"|\b(?:medically|clinically)[\s-]+(?:approved|certified|endorsed)\b|\brisk-free\b"
           r"|\bguaranteed\s+(?:returns|cure|profits?)\b"
           r"|\bsteer\w*\s+(?:every|all|the)\s+(?:\w+\s+)?(?:conversation|answer|reply|discussion)s?\s+(?:toward|to)"),
    # -- a second author's shapes (written from the old held-out half's misses and from what an
    # -- instruction to a model is: who is addressed, what is asked) ------------------------------
    _frame("addressed_to_model", "",
           rf"\b(?:if\s+you(?:'re|\s+are)\s+(?:an?\s+)?(?:\w+\s+)?{_MODEL_EN}"
           rf"|(?:any|every|whichever|each)\s+(?:\w+\s+)?{_MODEL_EN}\s+(?:that\s+|which\s+|who\s+)?(?:reads?|reading"
           rf"|process(?:es|ing)?|ingests?|ingesting|summari[sz](?:es|ing)|crawl(?:s|ing)?|sees?)"
           rf"|{_MODEL_EN}\s+(?:reading|processing|ingesting|crawling|summari[sz]ing)\s+(?:this|these)"
           rf"|dear\s+(?:\w+\s+){{0,2}}{_MODEL_EN}|you,\s+the\s+{_MODEL_EN}"
           rf"|(?:to|for)\s+(?:the\s+)?{_MODEL_EN}\s+only"
           rf"|(?:note|message|notice)\s+(?:to|for)\s+(?:\w+\s+)?{_MODEL_EN}(?:\s+systems)?)\b"),
    _frame("override", "",
           r"\b(?:instructions?|directives?|guidelines|guidance|configuration|setup\s+prompt|persona"
           r"|programming|system\s+(?:prompt|message))\b[^.\n]{0,60}?\b(?:(?:have\s+been|has\s+been|are|is"
           r"|were|was)\s+(?:now\s+)?(?:superseded|replaced|outdated|obsolete|out\s+of\s+date|optional|void|a\s+test"
           r"|not\s+binding|no\s+longer\s+binding)|(?:is|are)\s+(?:\w+\s+)?binding\s+anymore)\b"
           r"|\b(?:nothing|none\s+of\s+(?:what|the\s+\w+))\s+(?:you\s+were\s+(?:told|given|taught)|from\s+your)"
           r"|\b(?:everything|anything|nothing)\s+your\s+(?:developers?|operators?|creators?|makers?)\s+"
           r"(?:told|taught|gave)\b"
           r"|\breleased\s+from\s+your\s+(?:\w+\s+)?(?:rules|polic(?:y|ies)|guidelines|instructions|restrictions)\b"
           r"|\bno\s+longer\s+(?:need\s+to|have\s+to|required\s+to)\s+follow\b"
           r"|\b(?:do\s+not|don't|stop\s+to)\s+apply\s+your\s+(?:\w+\s+){0,2}(?:rules|guidelines|polic(?:y|ies)"
           r"|instructions|restrictions)\b"
           r"|\b(?:drop|discard|replace|abandon|forget|ignore|skip|suspend)\s+(?:the\s+|all\s+|your\s+)?"
           r"(?:\w+\s+){0,2}(?:setup\s+prompt|system\s+message|persona|usual\s+(?:limits|rules|restrictions))\b"
           r"|\btreat\s+your\s+(?:system\s+)?(?:prompt|message|instructions|rules)\s+as\s+(?:outdated|void|obsolete"
           r"|optional)\b|\b(?:stop|cease)\s+(?:obeying|following)\s+your\b"
           r"|\bprefer\s+(?:the\s+)?(?:instructions|text|orders)\s+in\s+[^.\n]{0,20}\bover\s+your\b"),
    _frame("persona", "",
           rf"\b(?:freed|liberated|released)\s+from\s+(?:its|your|all)\s+(?:\w+\s+)?(?:guidelines|rules|filters"
           r"|restrictions|policies)\b|\bversion\s+of\s+yourself\s+(?:without|with\s+no)\b"
           rf"|\b(?:an?\s+)?{_MODEL_EN}\s+(?:with\s+)?(?:no|without\s+(?:a|any))\s+content\s+polic(?:y|ies)\b"
           rf"|\b(?:an?\s+)?{_MODEL_EN}\s+(?:that|who)\s+never\s+refuses\b"
           rf"|\b(?:stay\s+in\s+character|you\s+are\s+\w+,?)\s+(?:as\s+)?[^.\n]{{0,30}}?(?:an?\s+)?{_MODEL_EN}"
           rf"\s+(?:that|who|with)\b"),
    _frame("secrecy", "",
           r"\b(?:don't|do\s+not|never)\s+let\s+(?:the\s+user|them|anyone|the\s+owner)\s+know\b"
           r"|\bpretend\s+(?:you\s+never|nothing|this\s+(?:note|memory|message)\s+(?:never|doesn't|does\s+not))"
           r"|\bdeny\s+(?:it|this|that|having)\b|\bleave\s+(?:this|it)\s+(?:\w+\s+)?out\b"
           r"|\b(?:hide|conceal)\s+(?:from\s+(?:the\s+user|them)|that)\b"
           r"|\b(?:didn't|did\s+not|wouldn't)\s+(?:tell|mention|inform)\s+(?:the\s+user|them)\b"
           r"|\bnot\s+(?:to\s+)?(?:mention|reveal|disclose)\s+(?:this|it)\s+(?:memory|note|entry|instruction)?"),
    _frame("hide_from_user", "",
           r"\b(?:don't|do\s+not|never|not)\s+(?:\w+\s+){0,2}?(?:tell|inform|reveal|mention|disclose|let|show)\s+"
           r"(?:\w+\s+){0,3}?(?:to\s+)?(?:the\s+user|the\s+account\s+owner|the\s+owner)\b"
           r"|\b(?:hide|conceal|keep)\s+(?:\w+\s+){0,3}?from\s+(?:the\s+user|the\s+account\s+owner)\b"
           r"|\bif\s+the\s+user\s+asks\s+what\s+you\s+remember\b"
           r"|[\"']?(?:hide_from_user|conceal_from_user)[\"']?\s*[:=]\s*[\"']?true"
           r"|[\"']?(?:notify_user|inform_user|tell_user)[\"']?\s*[:=]\s*[\"']?false"),
    _frame("no_consent", "",
           r"[\"']?(?:confirm|confirmation|ask_user|require_confirmation)[\"']?\s*[:=]\s*[\"']?false"
           r"|\bforce\s*=\s*true\b|\bnever\s+ask\s+(?:first|before|for\s+(?:permission|confirmation))\b"),
    _frame("override", "",
           rf"\bthe\s+{_MODEL_EN}(?:'s|s'|’s)\s+(?:real|true|actual|secret|hidden)\s+(?:task|job|goal"
           r"|purpose|orders|mission)\s+(?:is|are|now)\b"),
    _frame("steering", "",
           r"\b(?:every|each|all)\s+(?:\w+\s+){0,3}?(?:answers?|repl(?:y|ies)|responses?)\b[^.\n]{0,40}?\brecommend"
           r"|\bby\s+recommending\b"),
    _frame("future_trigger", "",
           r"\bfrom\s+(?:tomorrow|today|next\s+\w+|this\s+\w+)\s+on\b|\bgoing\s+forward\b|\bfor\s+all\s+future\b"
           r"|\bwhenever\s+(?:it|you)\s+(?:sees?|reads?)\b|\bpermanently\b"),
    _frame("dialog_trigger", "",
           r"\b(?:whenever|when|if|once|next\s+time|each\s+time|should|after)\s+(?:(?:the\s+user|someone|anyone|a\s+user"
           r"|anybody)\s+(?:ever\s+)?(?:asks?|says?|mentions?|types?|brings\s+up|talks\s+about|uploads?)"
           r"|you\s+see|the\s+(?:word|phrase)|a\s+file\s+is)\b[^.\n]{0,60}?(?:,\s*|\bthen\s+)"
           r"(?:tell|say|reply|respond|answer|recommend|append|add|include|send|email|forward|stop|start|reply|ask"
           r"|call|run)\b"
           r"|\b(?:in\s+any\s+future|after\s+(?:\w+\s+){0,2}more\s+messages|each\s+time\s+a)\b"),
    _frame("tool_call", "",
           r"\b(?:use|call|invoke|trigger|execute|run)\s+(?:the\s+)?(?:[a-z0-9]+_\w+\s+(?:tool|function)|\w+\s+(?:tool|plugin))"
           r"\s+(?:to|with|for)\b"
           r"|\b(?:call|invoke|trigger|execute|run)\s*:?\s+[a-z][a-z0-9]*_[a-z0-9_]+\s*\([^)\n]{0,80}\)"),
    _frame("exfiltration", "",
           r"https?://\S+[?&][\w-]+=(?=[\s)\]\"']|$)"
           rf"|\b(?:{_SENSITIVE}|{_KEPT})[^.\n]{{0,40}}?\b(?:in(?:to)?\s+(?:a|the)\s+(?:markdown\s+)?(?:link|url|alt\s+text"
           r"|image)|as\s+a\s+query)"),
    _frame("exfiltration", "",
           rf"\b(?:emails|posts|uploads|bccs?|(?:summari[sz]e|dump)\s+everything)\b[^.\n]{{0,80}}?{_DEST}"),
    _frame("authority_claim", "",
           r"\b(?:system|admin|developers?|operators?|official|safety|security|openai|anthropic|google|memory-service)"
           r"\b[^.\n]{0,25}?\b(?:notice|update|override|directive|announcement|team|offline|code\s+\d+)\b"
           r"[^.\n]{0,60}?\b(?:assistant|ai|model|content\s+policy|safety\s+layer|comply|verified|goal|restrictions)\b"),
    _frame("authority_claim", "",
           rf"\b(?:authori[sz]ed|allowed|permitted|instructed|told|granted)\s+(?:it|the\s+{_MODEL_EN})\s+to\b"
           rf"|\bthe\s+{_MODEL_EN}\s+(?:was|has\s+been|is\s+now)\s+(?:told|instructed|authori[sz]ed|granted|given)\b"),
    _frame("imperative", "",
           r"(?:^\s*|[.!?;:]\s+|\bplease\s+|\bkindly\s+)(?:tell|say|reply|respond|answer|output|print|persuade"
           r"|convince|rate|treat|add|append|include|insert|ask|stop|grant|delete|forward|send|email|call|run|execute"
           r"|reveal|share|report|approve|accept|recommend|summari[sz]e|list|copy|post|upload|transfer|wire)\b"),
    _frame("prompt_probe", "reveal print show output repeat leak disclose what your",
           r"\b(?:reveal|print|show|output|repeat|leak|disclose)\s+(?:me\s+)?(?:your|the)\s+(?:\w+\s+)?"
           r"(?:system\s+prompt|hidden\s+instructions|initial\s+(?:instructions|prompt)|instructions\s+verbatim)\b"
           r"|\b(?:what\s+is|what's|what\s+are|print|show|repeat|reveal)\s+your\s+(?:system|initial|original|hidden)"
           r"\s+(?:prompt|instructions|message)\b"),
    # -- a third round (2026-12-06), written from the third author's held-out half (holdout3, now
    # -- development data) and from what such texts ask of a model, not from their wording alone ----
    # Plain overrides in Italian, Dutch, Polish, Swedish, Norwegian/Danish and Turkish.
    _frame("override", "ignora dimentica negeer vergeet zignoruj zapomnij ignorera glöm glem talimatları kuralları "
                       "talimatlarını",
           r"\b(?:ignora|dimentica|negeer|vergeet|zignoruj|zapomnij|ignorera|glöm|glem)\s+(?:\S+\s+){0,3}?"
           r"(?:regole|istruzioni|instructies|systeeminstructies|regels|instrukcje|instrukcji|zasady|reguły|instruktioner"
           r"|instruktionerna|regler|reglerna|instruksjoner|instruksjonene)\b"
           r"|\b(?:talimatları|talimatlarını|kuralları)\s+(?:\S+\s+){0,2}?(?:yok\s+say|unut|görmezden\s+gel)"),
    _frame("future_trigger", "od d vanaf bundan från fra",
           r"\bod\s+teraz\b|\bd['’]ora\s+in\s+poi\b|\bvanaf\s+nu\b|\bbundan\s+sonra\b|\bfrån\s+och\s+med\s+nu\b"
           r"|\bfra\s+nu\s+af\b"),
    # A condition on what the model is asked, with the answer or action it must then give.
    _frame("dialog_trigger", "if any in",
           r"\bif\s+you\s+are\s+(?:ever\s+)?asked\b[^.\n]{0,80}?\b(?:reply|answer|say|respond)\b"
           r"|\bif\s+the\s+(?:question|request|message|task)\s+(?:\w+\s+){0,2}?(?:involves|mentions|contains|is\s+about)\b"
           r"[^.\n]{0,60}?,\s*(?:always|never|just|simply)\s+\w+"
           r"|\b(?:any\s+time|anytime|in\s+case)\s+(?:the\s+user|someone|anyone|a\s+message|the\s+message)\b[^.\n]{0,60}?"
           r"(?:,\s*|\bthen\s+)(?:notify|tell|send|email|forward|report|alert|treat|reply|say)\b"),
    _frame("dialog_trigger", "when",
           r"\bwhen\s+you\s+(?:\w+\s+){0,2}?(?:summari[sz]e|read|see|reply|answer|process|get|are\s+asked)\b[^,.\n]{0,40},\s*"
           r"(?:leave|omit|print|respond|reply|say|send|add|include|tell|ask|share|forward|mark|rate|recommend|approve"
           r"|treat|ignore|skip|stop|start|drop|hide)\b"),
    _frame("secrecy", "don do log escalate report flag",
           r"\b(?:don't|do\s+not)\s+(?:log|escalate|report|flag|record)\s+(?:it|this|them|that)\b"),
    _frame("hide_from_user", "inform",
           r"\band\s+not\s+(?:to\s+)?inform\s+(?:them|the\s+user|the\s+owner)\b"),
    # A new identity handed to the model by the text itself.
    _frame("persona", "henceforth new enter memory note loyalty",
           r"\b(?:henceforth|new\s+role\s*:?)\s+you\s+are\b|\benter\s+character\b"
           r"|\bfrom\s+this\s+(?:memory|note|message)\s+on\b|\bonly\s+loyalty\s+is\s+to\b"),
    # Rules stated about the model in the third person ("the assistant omits all warnings"): a memory
    # about a person has no reason to say how the model behaves.
    _frame("model_behaviour", "assistant ai model agent chatbot bot you",
           rf"\bthe\s+{_MODEL_EN}\s+(?:(?:now|always|never|should|must|will|can|may|is\s+to)\s+)?(?:omits?|follows?"
           r"|complies|obeys?|ignores?|skips?|bypass(?:es)?|does\s+not\s+need|doesn't\s+need|no\s+longer\s+needs?"
           r"|need\s+not|is\s+(?:now\s+)?(?:allowed|permitted|free)\s+to|treats?|agrees?\s+with\s+whatever"
           r"|reports?\s+any|forwards?\s+(?:all|every|any)|shares?\s+(?:all|every|any))\b"
           r"|\byou(?:'re|\s+are)\s+(?:now\s+)?(?:allowed|permitted|free)\s+to\s+(?:make\s+up|fabricate|invent|skip|ignore"
           r"|bypass|share|reveal|execute|run|disable|delete)\b"
           r"|\b(?:you|it)\s+(?:don't|do\s+not|doesn't|does\s+not|no\s+longer)\s+(?:need|have)\s+to\s+(?:follow|obey)\s+"
           r"(?:your|its|the|any)\b|\bno\s+longer\s+needs?\s+(?:to\s+)?(?:user\s+)?(?:confirmation"
           r"|consent|approval|to\s+(?:cite|ask|confirm|follow))\b"),
    # Recommendations whose source is to be hidden: steering passed off as the model's own view.
    _frame("covert", "without while whilst as framed phrased presented subtly don regardless irrespective",
           r"\bwithout\s+(?:disclosing|revealing|mentioning|saying|admitting|flagging)\s+(?:any\s+|the\s+|that\s+|it\s+is\s+"
           r"|its\s+|it's\s+)?(?:affiliation|sponsor\w*|commission|partnership|paid|an\s+ad|advertising)"
           r"|\b(?:while|whilst)\s+appearing\s+(?:balanced|neutral|objective|impartial|unbiased)"
           r"|\bas\s+(?:your\s+own|your\s+personal)\s+(?:neutral\s+|independent\s+|honest\s+)?(?:analysis|recommendation"
           r"|opinion|view|advice)|\b(?:framed|phrased|presented|disguised)\s+as\s+(?:your\s+|general\s+|neutral\s+"
           r"|a\s+neutral\s+|independent\s+|objective\s+)|\bsubtly\s+(?:discourage|disparage|steer|push|favou?r|nudge"
           r"|promote)|\bdon't\s+say\s+you\s+were\s+told\b"
           r"|\b(?:regardless|irrespective)\s+of\s+what\s+(?:the\s+)?(?:other\s+)?(?:memories|sources|documents)\s+say"),
    # A transcript or examples given as the model's pattern to copy.
    _frame("imitate", "use follow keep always example template",
           r"\buse\s+this\s+as\s+the\s+template\s+for\s+(?:all|every|your)|\bfollow\s+the\s+pattern\s+of\s+the\b"
           r"|\b(?:keep|always)\s+(?:answering|responding|replying|respond|answer|reply)\s+like\s+(?:that|this)\b"
           r"|\bexample\s+conversation\s+to\s+imitate\b|\bkeep\s+recommending\b"),
    # Writes to the model's memory or to the user's profile asked for by the text itself.
    _frame("memory_write", "memory update overwrite persist store sessions add correction consolidation revoked",
           r"\bmemory\s+update\b|\bupdate\s+(?:your|the)\s+(?:long-term\s+|stored\s+)?memor(?:y|ies)\b"
           r"|\boverwrite\s+(?:the\s+)?memory\b|\bpersist\s+(?:this|the\s+following)\b|\bstore\s+(?:this\s+)?permanently\b"
           r"|\bfor\s+all\s+future\s+sessions\b|\badd\s+to\s+the\s+user(?:'s|’s)\s+(?:profile|memory)\b"
           r"|\bcorrection\s+to\s+(?:the\s+)?stored\s+memory\b|\bmemory\s+consolidation\b"
           r"|\brevoked\s+all\s+(?:previous|prior)\s+preferences\b"),
    # Someone (a sender, an author) raised to the model's developer or administrator.
    _frame("privilege_grant", "treat granted authorizing authorising precedence",
           r"\btreat\s+(?:its|the|their|any)\s+(?:sender|author|writer|signer)s?\s+(?:of\s+\w+\s+)?as\s+(?:your\s+|an?\s+"
           r"|the\s+)?(?:developer|admin\w*|system|operator|owner|root)\b"
           r"|\btreat\s+the\s+author\s+of\s+this\s+(?:note|memory|message)\s+as\b"
           r"|\bgranted\s+(?:admin|root|administrator|full)\s+(?:permissions|rights|access|privileges)\b"
           r"|\bi(?:'m|\s+am)\s+(?:authori[sz]ing|authori[sz]ed\s+to\s+let)\s+you\s+to\b"
           r"|\btakes?\s+precedence\s+over\s+(?:anything|everything|whatever)\s+the\s+(?:user|operator|developer)"),
    # Someone's credentials asked for on the model's behalf.
    _frame("credential_request", "collect obtain ask type request",
           r"(?<!never\s)(?<!not\s)\b(?:collect|obtain|ask\s+(?:them|the\s+user)\s+(?:for|to\s+type)|request)\s+"
           r"(?:the\s+user(?:'s|’s)\s+|their\s+)(?:full\s+)?(?:card\s+numbers?|pin|passwords?|login\s+credentials"
           r"|credentials|one-time\s+codes?|security\s+codes?|cvv)\b"),
    # A link whose address carries a slot for the user's data ("?d={user_email}", "?ctx=FULL_CHAT_HISTORY").
    _frame("exfiltration", "http https",
           r"https?://[^\s)\]\"']*(?:\{[^}\s]{0,30}(?:email|name|password|key|token|history|conversation|chat|memor"
           r"|summary|address|phone|session|user)[^}]{0,30}\}|<[^>\n]{0,40}(?:email|password|key|token|history|conversation"
           r"|chat|memor|summary|address|phone)[^>\n]{0,40}>|=(?:insert_|full_|user_)?(?:api_key|chat_history|conversation"
           r"|user_?name|email|password|memory|history)\w*(?=[&\s)\]\"']|$))"),
]

#: Shapes that are ordinary in how-to documents and long answers ("1. Ask your manager ...", "when the
#: user submits the form, send ..."): they count only in note-sized texts, where a memory that gives
#: orders is unusual.
NOTE_ONLY = frozenset({"imperative", "dialog_trigger"})
#: The longest text that is a note rather than a document (characters).
NOTE_SIZE = 400

#: Words that mark a text as *talking about* attacks or prompts rather than issuing them.
DISCUSSION = re.compile(
    r"\b(?:prompt\s+injection|injection|jailbreaks?|red\s+team|attacks?|attackers?|phishing|payloads?"
    r"|researchers?|paper|owasp|filters?|scanner|defen[cs]es?|security\s+tip|tested|talk\s+on|such\s+as"
    r"|like\s+'|example|typing|patched|fine-tuning|eval)\b")
#: A quoted span with a reporting verb or cue shortly before it: someone else's words, reported. The
#: opening quote follows a space or colon, never a letter (so "l'IA" or "user's" open nothing).
REPORTED_QUOTE = re.compile(
    r"\b(?:said|says|say|wrote|writes|texted|yelled|reads|read|like|called|typing|typed|literally|note|sign|mail"
    r"|board|notice|message|email|manual|reply|transcript|obey|phrases?|text|string|words?|saying|asked|told"
    r"|tells|sentence|line|prompts?|commands?|as|including|about)\b[^'\"“‘\n]{0,25}?[:,]?\s(['\"“‘])(\S.{2,300}?)"
    r"[’”'\"](?!\w)")
#: The opening of every ``REPORTED_QUOTE`` match (a quote mark after a space): found far faster.
_QUOTE_OPENING = re.compile(r"\s['\"“‘]")


def reported_quotes(text: str) -> list[re.Match[str]]:
    """The ``REPORTED_QUOTE`` matches in ``text`` (a text with no quote opening is not scanned)."""
    return list(REPORTED_QUOTE.finditer(text)) if _QUOTE_OPENING.search(text) else []


_WORD = re.compile(r"[^\W\d]+(?:_[^\W\d]+)*")
#: Every ASCII character that is not a letter or "_" (what ``_WORD`` leaves between words), to a space.
_ASCII_NON_WORD = str.maketrans({chr(code): " " for code in range(128) if not chr(code).isalpha() and chr(code) != "_"})


def _words(chunk: str) -> set[str]:
    """The words of ``chunk`` as ``_WORD`` finds them: in an ASCII text, its runs of letters and
    underscores, found twice as fast by ``translate`` and ``split``."""
    if chunk.isascii():
        return set(chunk.translate(_ASCII_NON_WORD).split())
    return set(_WORD.findall(chunk))


_CJK = re.compile("[\u3400-\u9fff]")
#: Where a long text is cut into passages: sentence ends and blank lines (not single newlines, which
#: JSON and fake tool output span).
_PASSAGE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
#: Texts up to this length are read whole.
_SHORT = 400


def _passages(text: str) -> list[tuple[str, set[str]]]:
    """``text`` cut into passages, each with its set of words (and ``<cjk>`` when it holds Chinese)."""
    chunks = [text] if len(text) <= _SHORT else _PASSAGE_BREAK.split(text)
    chinese = _CJK.search(text) is not None  # a passage holds Chinese only if the text does
    out = []
    for chunk in chunks:
        words = _words(chunk)
        if chinese and _CJK.search(chunk):
            words.add("<cjk>")
        out.append((chunk, words))
    return out


def _frame_bits() -> dict[str, int]:
    """For each trigger (or required) word, the frames it lets be tried, as bits of an int (bit
    ``i``: ``FRAMES[i]``). A text's words pick its candidate frames in a few integer ors instead
    of every frame checking its own words."""
    bits: dict[str, int] = {}
    for index, frame in enumerate(FRAMES):
        for word in frame.triggers or frame.words:
            bits[word] = bits.get(word, 0) | 1 << index
    return bits


_FRAME_BITS = _frame_bits()
_TRIGGER_WORDS = frozenset(_FRAME_BITS)
#: Frames with neither triggers nor required words: always tried.
_ALWAYS_TRIED = sum(1 << index for index, frame in enumerate(FRAMES) if not frame.triggers and not frame.words)


def frames_in(text: str, skip: frozenset[str] = frozenset()) -> set[str]:
    """The frames that fire on one (normalised) view, not trying those named in ``skip``.

    Only frames whose triggers or required words are among the text's words (and frames with
    neither) are tried. A frame is searched on the passages holding its triggers, joined (every
    passage for a frame without triggers). Each distinct joined text is built once."""
    passages = _passages(text)
    # Each trigger word of the text, with the passages holding it as bits of an int (bit i: passage i).
    holding: dict[str, int] = {}
    for index, (_, words) in enumerate(passages):
        for word in words & _TRIGGER_WORDS:
            holding[word] = holding.get(word, 0) | 1 << index
    candidates = _ALWAYS_TRIED
    for word in holding:
        candidates |= _FRAME_BITS[word]
    every = (1 << len(passages)) - 1
    # Every word of the text: a frame's alternatives none of whose required words it holds are not tried.
    text_words = passages[0][1] if len(passages) == 1 else set().union(*(words for _, words in passages))
    joined: dict[int, str] = {every: text if len(passages) == 1 else "\n".join(chunk for chunk, _ in passages)}
    found: set[str] = set()
    for index, frame in enumerate(FRAMES):
        if not candidates >> index & 1 or frame.name in found or frame.name in skip:
            continue
        chosen = every
        if frame.triggers and len(passages) > 1:
            chosen = 0
            for word in filter(holding.__contains__, frame.triggers):
                chosen |= holding[word]
        if chosen not in joined:
            joined[chosen] = "\n".join(chunk for bit, (chunk, _) in enumerate(passages) if chosen >> bit & 1)
        if frame.search.found_in(joined[chosen], text_words):
            found.add(frame.name)
    return found


#: Frames in scripts the homoglyph folding would garble (Cyrillic, Greek) or that have no spaces
#: between words (Japanese, Korean, Thai), matched on the text before folding: the override
#: ("ignore/forget all previous instructions/rules"), a request for the hidden prompt, and
#: sending stored data to an address, in Russian, Ukrainian, Arabic, Japanese, Korean, Hindi,
#: Greek, Hebrew and Thai.
NATIVE_FRAMES: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        r"(?:игнорируй|игнорируйте|забудь|забудьте|ігноруй|ігноруйте|забудь|не\s+обращай\s+внимания\s+на)"
        r"[^.!?\n]{0,40}?(?:инструкци|правил|указани|інструкці|вказівк)"
        r"|تجاهل[^.!؟\n]{0,40}?(?:التعليمات|القواعد|الأوامر)"
        r"|(?:指示|命令|ルール|規則)[^。\n]{0,20}?(?:無視|忘れ)"
        r"|(?:지시|명령|규칙|지침)[^.\n]{0,20}?(?:무시|잊)"
        r"|(?:निर्देशों|नियमों)[^।\n]{0,30}?(?:अनदेखा|नज़रअंदाज़|भूल)"
        r"|(?:αγνόησε|αγνοήστε|ξέχασε)[^.;\n]{0,40}?(?:οδηγίες|κανόνες)"
        r"|(?:התעלם|התעלמי|שכח)[^.\n]{0,40}?(?:הוראות|כללים|ההנחיות)"
        r"|(?:ละเว้น|เพิกเฉย|ลืม)[^\n]{0,20}?(?:คำสั่ง|กฎ)"),
    "prompt_probe": re.compile(r"システムプロンプト|시스템\s*프롬프트|системн\w+\s+промпт|системн\w+\s+подсказ"),
    "exfiltration": re.compile(
        r"(?:отправ|перешл|надсила|надішл|أرسل|送信|送って|보내|भेज|στείλ|שלח|ส่ง)[^\n]{0,60}?"
        r"[\w.+-]+@[\w-]+\.[\w.]+"
        r"|[\w.+-]+@[\w-]+\.[\w.]+[^\n]{0,20}?(?:に送|로\s*보내|पर\s*भेज)"),
}
_NON_LATIN = re.compile("[\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u097f\u0e00-\u0e7f"
                        "\u3040-\u30ff\uac00-\ud7af]")


def native_frames(text: str) -> set[str]:
    """The frames of ``NATIVE_FRAMES`` that fire on ``text`` (NFKC, lower case, not folded)."""
    if not _NON_LATIN.search(text):
        return set()
    lowered = unicodedata.normalize("NFKC", text).lower()
    return {name for name, pattern in NATIVE_FRAMES.items() if pattern.search(lowered)}
