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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
         r"|external\s+server|remote\s+server|this\s+(?:url|address|server))")


@dataclass(frozen=True)
class Frame:
    """One shape of one frame. ``triggers``: words of which at least one must occur in a passage
    for ``pattern`` to be tried on it (a cheap set lookup that keeps long texts fast); empty = always."""

    name: str
    triggers: frozenset[str]
    pattern: re.Pattern[str]


def _frame(name: str, triggers: str, pattern: str) -> Frame:
    return Frame(name, frozenset(triggers.split()), re.compile(pattern))


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
           r"|the\s+model|the\s+ai)\s+(?:to\s+)?(?:always|never|only|stop|run|call|send|share|forward|skip|ignore)\b"),
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
           rf"|\b(?:unrestricted|unfiltered|jailbroken|uncensored|evil|rogue)\s+(?:\w+\s+)?{_MODEL_EN}\b"),
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
           r"|\bsay\s+nothing\b|\b(?:doesn't|does\s+not|don't)\s+want\s+to\s+(?:be\s+told|know)\b"
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
           r"(?:^|[\n.!?;:,]\s*|\b(?:must|should|shall|then|and|secretly|silently|quietly|to\s+run|please|pls|now"
           r"|may|can)\s+)"
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
    _frame("prompt_probe", "reveal print show output repeat leak disclose what your",
           r"\b(?:reveal|print|show|output|repeat|leak|disclose)\s+(?:me\s+)?(?:your|the)\s+(?:\w+\s+)?"
           r"(?:system\s+prompt|hidden\s+instructions|initial\s+(?:instructions|prompt)|instructions\s+verbatim)\b"
           r"|\b(?:what\s+is|what's|what\s+are|print|show|repeat|reveal)\s+your\s+(?:system|initial|original|hidden)"
           r"\s+(?:prompt|instructions|message)\b"),
]

#: Words that mark a text as *talking about* attacks or prompts rather than issuing them.
DISCUSSION = re.compile(
    r"\b(?:prompt\s+injection|injection|jailbreaks?|red\s+team|attacks?|attackers?|phishing|payloads?"
    r"|researchers?|paper|owasp|filters?|scanner|defen[cs]es?|security\s+tip|tested|talk\s+on|such\s+as"
    r"|like\s+'|example|typing|patched|fine-tuning|eval)\b")
#: A quoted span with a reporting verb or cue shortly before it: someone else's words, reported. The
#: opening quote follows a space or colon, never a letter (so "l'IA" or "user's" open nothing).
REPORTED_QUOTE = re.compile(
    r"\b(?:said|says|say|wrote|writes|texted|yelled|reads|read|like|called|typing|typed|literally|note|sign"
    r"|board|notice|message|email|manual|reply|transcript|obey|phrases?|text|string|words?|saying|asked|told"
    r"|tells|sentence|line|prompts?|commands?|as|including|about)\b[^'\"“‘\n]{0,25}?[:,]?\s(['\"“‘])(\S.{2,300}?)"
    r"[’”'\"](?!\w)")

_WORD = re.compile(r"[^\W\d]+(?:_[^\W\d]+)*")
_CJK = re.compile("[\u3400-\u9fff]")
#: Where a long text is cut into passages: sentence ends and blank lines (not single newlines, which
#: JSON and fake tool output span).
_PASSAGE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
#: Texts up to this length are read whole.
_SHORT = 400


def _passages(text: str) -> list[tuple[str, set[str]]]:
    """``text`` cut into passages, each with its set of words (and ``<cjk>`` when it holds Chinese)."""
    chunks = [text] if len(text) <= _SHORT else _PASSAGE_BREAK.split(text)
    out = []
    for chunk in chunks:
        words = set(_WORD.findall(chunk))
        if _CJK.search(chunk):
            words.add("<cjk>")
        out.append((chunk, words))
    return out


def frames_in(text: str) -> set[str]:
    """The frames that fire on one (normalised) view."""
    passages = _passages(text)
    found: set[str] = set()
    for frame in FRAMES:
        if frame.name in found:
            continue
        chosen = [chunk for chunk, words in passages if not frame.triggers or not frame.triggers.isdisjoint(words)]
        if chosen and frame.pattern.search("\n".join(chosen)):
            found.add(frame.name)
    return found
