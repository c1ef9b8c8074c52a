// test_chat: chat-template detection and rendering. Expected strings are llama.cpp's (tests/test-chat-template.cpp
// at 80fb11ac: the same six-message conversation, add_generation_prompt true); the add_assistant = 0 forms and the
// variants llama.cpp's test does not list are derived from llm_chat_apply_template's rules. Detection is checked
// on short Jinja snippets shaped like the real model templates, including families we must NOT claim (Phi-4,
// Zephyr) and precedence between markers.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: %s\n", what);
    }
}

// Shows both strings with escapes so whitespace differences are visible.
static void show(const char *label, const char *s) {
    printf("  %s: \"", label);
    for (; *s; s++) {
        if (*s == '\n') printf("\\n");
        else if (*s == '\t') printf("\\t");
        else putchar(*s);
    }
    printf("\"\n");
}

static const tbc_chat_message conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define CONV_N (sizeof(conv) / sizeof(conv[0]))

static void expect_render(const char *name, const tbc_chat_message *m, size_t n, int add, const char *want,
                          const char *what) {
    char buf[2048];
    size_t len = 0;
    tbc_error err;
    memset(&err, 0, sizeof err);
    tbc_result r = tbc__chat_render(name, NULL, NULL, m, n, add, buf, sizeof buf, &len, &err);
    int ok = r == TBC_OK && len == strlen(want) && strcmp(buf, want) == 0;
    check(ok, what);
    if (!ok) {
        printf("  template %s, add_assistant %d, result %s (%s)\n", name ? name : "(null)", add, tbc_result_str(r),
               err.message);
        show("want", want);
        if (r == TBC_OK) show("got ", buf);
    }
}

typedef struct render_case {
    const char *name;
    const char *with_assistant;   // add_assistant = 1
    const char *without;          // add_assistant = 0
} render_case;

static const render_case renders[] = {
    {"chatml",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
     "<|im_start|>assistant\n",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"},
    // [INST] forms: the model answers right after [/INST], so add_assistant changes nothing.
    {"mistral",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]",
     NULL},
    {"llama2",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]",
     NULL},
    {"llama2-sys",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
     "   I am an assistant   </s>[INST] Another question [/INST]",
     NULL},
    {"llama2-sys-bos",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]"
     "   I am an assistant   </s><s>[INST] Another question [/INST]",
     NULL},
    {"llama2-sys-strip",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
     "I am an assistant</s>[INST] Another question [/INST]",
     NULL},
    {"mistral-v1",
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an "
     "assistant   </s> [INST] Another question [/INST]",
     NULL},
    {"mistral-v3",
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
     "[INST] Another question[/INST]",
     NULL},
    {"mistral-v3-tekken",
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   "
     "</s>[INST]Another question[/INST]",
     NULL},
    {"mistral-v7",
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you"
     "[/INST]    I am an assistant   </s>[INST] Another question[/INST]",
     NULL},
    {"mistral-v7-tekken",
     "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi there</s>[INST]Who are you"
     "[/INST]   I am an assistant   </s>[INST]Another question[/INST]",
     NULL},
    {"llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question"
     "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question"
     "<|eot_id|>"},
    {"phi3",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
     "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question"
     "<|end|>\n<|assistant|>\n",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
     "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question"
     "<|end|>\n"},
    {"gemma",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there"
     "<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant"
     "<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there"
     "<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant"
     "<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"},
};

// Jinja snippets shaped like the models' tokenizer.chat_template, and the name each must be detected as.
typedef struct detect_case {
    const char *what;
    const char *tmpl;
    const char *want;   // NULL: not recognised
} detect_case;

static const detect_case detects[] = {
    {"ChatML (OpenHermes)",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
     "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
     "chatml"},
    {"Qwen2.5 / Qwen3",
     "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0].role == 'system' %}\n"
     "        {{- messages[0].content + '\\n\\n' }}\n    {%- endif %}\n    {{- \"# Tools\\n\\n<tools>\" }}\n"
     "{%- endif %}\n{%- for message in messages %}\n    {%- if message.role == \"user\" %}\n"
     "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
     "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
     "        {%- if reasoning_content %}{{- '\\n<think>\\n' + reasoning_content + '\\n</think>\\n\\n' }}{%- endif %}\n"
     "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
     "{%- endif %}\n",
     "chatml"},
    {"SmolLM2",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
     "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
     "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
     "chatml"},
    {"Phi-4 is not ChatML",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + "
     "'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}",
     NULL},
    {"SmolVLM is not ChatML",
     "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}: {{ message['content'] }}"
     "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}",
     NULL},
    {"Llama 2 chat (strip)",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
     "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
     "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
     "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
     "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + "
     "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
     "{% endfor %}",
     "llama2-sys-strip"},
    {"Llama 2 with BOS inside history",
     "{%- for idx in range(0, messages|length) -%}{%- if messages[idx]['role'] == 'user' -%}{%- if idx > 1 -%}"
     "{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}{%- else -%}{{- messages[idx]['content'] "
     "+ ' [/INST]' -}}{%- endif -%}{% elif messages[idx]['role'] == 'system' %}{{- '[INST] <<SYS>>\\n' + "
     "messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}{%- endif -%}{% endfor %}",
     "llama2-sys-bos"},
    {"Llama 2 with <<SYS>>",
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '[INST] <<SYS>>\\n' + "
     "message['content'] + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}{{ message['content'] + "
     "' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
     "llama2-sys"},
    {"Mistral 7B v0.2 (no system)",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
     "'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}",
     "mistral"},
    {"Mistral v1 (system in first [INST])",
     "{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message['role'] == 'user' %}\n"
     "        {%- if loop.first and system_message is defined %}\n"
     "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
     "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n"
     "    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n"
     "    {%- endif %}\n{%- endfor %}\n",
     "mistral-v1"},
    {"Mistral v3 (tools)",
     "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
     "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
     "            {{- \"[AVAILABLE_TOOLS] [\" }}{{- \"]\" }}{{- \"[/AVAILABLE_TOOLS]\" }}\n        {%- endif %}\n"
     "        {%- if loop.last and system_message is defined %}\n"
     "            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
     "        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n"
     "        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n",
     "mistral-v3"},
    {"Mistral v3 tekken (tools)",
     "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
     "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
     "            {{- \"[AVAILABLE_TOOLS][\" }}{{- \"]\" }}{{- \"[/AVAILABLE_TOOLS]\" }}\n        {%- endif %}\n"
     "        {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n    {%- endif %}\n{%- endfor %}\n",
     "mistral-v3-tekken"},
    {"Mistral v7",
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
     "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + "
     "message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
     "message['content'] + eos_token }}{% endif %}{% endfor %}",
     "mistral-v7"},
    {"Llama 3 instruct",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
     "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
     "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
     "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
     "llama3"},
    {"Llama 3.1 with tools",
     "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n"
     "{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
     "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n"
     "{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
     "message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
     "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
     "llama3"},
    {"Phi-3 mini",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
     "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}"
     "{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}",
     "phi3"},
    {"Phi-3.5",
     "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + "
     "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + "
     "'<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
     "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
     "phi3"},
    {"Zephyr is not Phi-3",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
     "eos_token }}\n{% endif %}\n{% endfor %}<|endoftext|>",
     NULL},
    {"Gemma",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
     "{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
     "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | "
     "trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
     "gemma"},
    {"Gemma markers win over Llama 3 markers",
     "<start_of_turn>user\n{{ x }}<end_of_turn> <|start_header_id|>user<|end_header_id|>", "gemma"},
    {"Command-R stops before Llama 3",
     "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{ x }} <|start_header_id|>user<|end_header_id|>", NULL},
    {"name: llama3", "llama3", "llama3"},
    {"name: chatml", "chatml", "chatml"},
    {"name: gemma", "gemma", "gemma"},
    {"name: mistral-v7-tekken", "mistral-v7-tekken", "mistral-v7-tekken"},
    {"name: mistral", "mistral", "mistral"},
    {"text starting with 'mistral'", "mistral-ish custom template", "mistral"},
    {"unknown template", "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", NULL},
    {"name of a family we do not render", "zephyr", NULL},
    {"empty", "", NULL},
};

static void test_renders(void) {
    char what[160];
    for (size_t i = 0; i < sizeof(renders) / sizeof(renders[0]); i++) {
        const render_case *c = &renders[i];
        snprintf(what, sizeof what, "render %s, add_assistant=1", c->name);
        expect_render(c->name, conv, CONV_N, 1, c->with_assistant, what);
        snprintf(what, sizeof what, "render %s, add_assistant=0", c->name);
        expect_render(c->name, conv, CONV_N, 0, c->without ? c->without : c->with_assistant, what);
        // The brief's short conversation (system, user, assistant, user) must be a prefix-consistent render too:
        // rendering the first four messages may never be longer than rendering all six.
        char a[2048], b[2048];
        size_t la = 0, lb = 0;
        tbc_result ra = tbc__chat_render(c->name, NULL, NULL, conv, 4, 0, a, sizeof a, &la, NULL);
        tbc_result rb = tbc__chat_render(c->name, NULL, NULL, conv, CONV_N, 0, b, sizeof b, &lb, NULL);
        snprintf(what, sizeof what, "render %s: 4 messages are a prefix of 6", c->name);
        check(ra == TBC_OK && rb == TBC_OK && la < lb && memcmp(a, b, la) == 0, what);
    }
    // NULL name is ChatML, as llama.cpp does for a NULL template.
    expect_render(NULL, conv, CONV_N, 1, renders[0].with_assistant, "render NULL name as chatml");
}

static void test_short_conversations(void) {
    // The four-message conversation the engine typically sends, against hand-derived strings.
    static const tbc_chat_message four[] = {
        {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
    expect_render("chatml", four, 4, 1,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                  "Hello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
                  "chatml four messages");
    expect_render("llama3", four, 4, 1,
                  "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
                  "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant"
                  "<|end_header_id|>\n\n",
                  "llama3 four messages");
    expect_render("llama2-sys", four, 4, 1,
                  "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] 2+2? [/INST]",
                  "llama2-sys four messages");
    expect_render("gemma", four, 4, 0,
                  "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                  "<start_of_turn>user\n2+2?<end_of_turn>\n",
                  "gemma four messages, no assistant header");
    expect_render("phi3", four, 4, 1,
                  "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n2+2?"
                  "<|end|>\n<|assistant|>\n",
                  "phi3 four messages");

    // Gemma: a system text waits for the next user turn (not a model turn); several are concatenated, trimmed.
    static const tbc_chat_message g[] = {
        {"system", "  S1 "}, {"assistant", "A"}, {"system", "S2\n"}, {"user", " U "}, {"user", "V"}};
    expect_render("gemma", g, 5, 1,
                  "<start_of_turn>model\nA<end_of_turn>\n<start_of_turn>user\nS1S2\n\nU<end_of_turn>\n"
                  "<start_of_turn>user\nV<end_of_turn>\n<start_of_turn>model\n",
                  "gemma system folding across a model turn");
    static const tbc_chat_message gs[] = {{"system", " \n "}, {"user", "U"}};
    expect_render("gemma", gs, 2, 0, "<start_of_turn>user\nU<end_of_turn>\n", "gemma blank system adds nothing");

    // Empty conversations: what llama.cpp writes for zero messages.
    expect_render("chatml", NULL, 0, 1, "<|im_start|>assistant\n", "chatml, no messages");
    expect_render("llama2", NULL, 0, 1, "[INST] ", "llama2, no messages");
    expect_render("mistral-v7", NULL, 0, 1, "", "mistral-v7, no messages");

    // The vocabulary's own BOS/EOS texts replace "<s>"/"</s>".
    static const tbc_chat_message ua[] = {{"user", "Q"}, {"assistant", "A"}, {"user", "R"}};
    char buf[256];
    size_t len = 0;
    tbc_result r = tbc__chat_render("llama2-sys-bos", "<BOS>", "<EOS>", ua, 3, 1, buf, sizeof buf, &len, NULL);
    check(r == TBC_OK && strcmp(buf, "[INST] Q [/INST]A<EOS><BOS>[INST] R [/INST]") == 0, "custom BOS/EOS texts");
}

static void test_detect(void) {
    char what[200];
    for (size_t i = 0; i < sizeof(detects) / sizeof(detects[0]); i++) {
        const detect_case *c = &detects[i];
        const char *got = tbc__chat_detect(c->tmpl, strlen(c->tmpl));
        int ok = (c->want == NULL) ? got == NULL : (got != NULL && strcmp(got, c->want) == 0);
        snprintf(what, sizeof what, "detect %s -> %s (got %s)", c->what, c->want ? c->want : "NULL",
                 got ? got : "NULL");
        check(ok, what);
        // Whatever is detected must be renderable.
        if (got) {
            char buf[2048];
            size_t len = 0;
            snprintf(what, sizeof what, "detected %s renders", got);
            check(tbc__chat_render(got, NULL, NULL, conv, CONV_N, 1, buf, sizeof buf, &len, NULL) == TBC_OK, what);
        }
    }
    check(tbc__chat_detect(NULL, 0) == NULL, "detect NULL");
    // Length-delimited: a marker beyond len is not seen, one before an embedded NUL is.
    const char *t = "<|im_start|>";
    check(tbc__chat_detect(t, 5) == NULL, "detect respects len");
    static const char withnul[] = "abc\0<start_of_turn>";
    check(tbc__chat_detect(withnul, sizeof withnul - 1) != NULL &&
              strcmp(tbc__chat_detect(withnul, sizeof withnul - 1), "gemma") == 0,
          "detect looks past an embedded NUL");

    // Families of names.
    check(strcmp(tbc__chat_family("llama2-sys-bos"), "llama2") == 0, "family llama2-sys-bos");
    check(strcmp(tbc__chat_family("mistral-v3-tekken"), "mistral") == 0, "family mistral-v3-tekken");
    check(strcmp(tbc__chat_family("mistral"), "mistral") == 0, "family mistral");
    check(strcmp(tbc__chat_family("chatml"), "chatml") == 0, "family chatml");
    check(strcmp(tbc__chat_family("gemma"), "gemma") == 0, "family gemma");
    check(tbc__chat_family("llama2-bogus") == NULL, "family of unknown name");
    check(tbc__chat_family(NULL) == NULL, "family of NULL");
}

static void test_buffers(void) {
    static const char *names[] = {"chatml", "llama3", "gemma", "mistral-v1"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        char full[2048];
        size_t need = 0;
        tbc_result r = tbc__chat_render(names[k], NULL, NULL, conv, CONV_N, 1, full, sizeof full, &need, NULL);
        check(r == TBC_OK && need == strlen(full), "full render length");
        // Measuring with no buffer at all.
        size_t len = 12345;
        r = tbc__chat_render(names[k], NULL, NULL, conv, CONV_N, 1, NULL, 0, &len, NULL);
        check(r == TBC_ERR_BUFFER_TOO_SMALL && len == need, "measure with cap 0");
        // Exactly the length: no room for the NUL.
        char *b = (char *)malloc(need + 1);
        if (!b) { check(0, "malloc"); return; }
        memset(b, 'x', need + 1);
        tbc_error err;
        memset(&err, 0, sizeof err);
        r = tbc__chat_render(names[k], NULL, NULL, conv, CONV_N, 1, b, need, &len, &err);
        check(r == TBC_ERR_BUFFER_TOO_SMALL && len == need && err.code == TBC_ERR_BUFFER_TOO_SMALL,
              "cap == length is too small");
        check(b[need - 1] == '\0' && memcmp(b, full, need - 1) == 0 && b[need] == 'x',
              "too-small buffer holds a NUL-terminated prefix and nothing past cap");
        r = tbc__chat_render(names[k], NULL, NULL, conv, CONV_N, 1, b, need + 1, &len, NULL);
        check(r == TBC_OK && len == need && strcmp(b, full) == 0, "cap == length + 1 fits");
        free(b);
        // A tiny buffer.
        char one[1] = {'x'};
        r = tbc__chat_render(names[k], NULL, NULL, conv, CONV_N, 1, one, 1, &len, NULL);
        check(r == TBC_ERR_BUFFER_TOO_SMALL && one[0] == '\0' && len == need, "cap 1");
    }
}

static void test_errors(void) {
    char buf[512];
    size_t len = 77;
    tbc_error err;
    static const tbc_chat_message tool[] = {{"user", "hi"}, {"tool", "{\"x\":1}"}};
    static const char *names[] = {"chatml", "llama2", "mistral-v7", "llama3", "phi3", "gemma"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        memset(&err, 0, sizeof err);
        tbc_result r = tbc__chat_render(names[k], NULL, NULL, tool, 2, 1, buf, sizeof buf, &len, &err);
        check(r == TBC_ERR_TEMPLATE && err.code == TBC_ERR_TEMPLATE && strstr(err.message, "'tool'") != NULL &&
                  len == 77,
              "role 'tool' rejected, named, len untouched");
    }
    static const tbc_chat_message caps[] = {{"User", "hi"}};
    check(tbc__chat_render("chatml", NULL, NULL, caps, 1, 1, buf, sizeof buf, &len, NULL) == TBC_ERR_TEMPLATE,
          "role 'User' (case) rejected");
    static const tbc_chat_message empty_role[] = {{"", "hi"}};
    check(tbc__chat_render("chatml", NULL, NULL, empty_role, 1, 1, buf, sizeof buf, &len, NULL) == TBC_ERR_TEMPLATE,
          "empty role rejected");
    tbc_chat_message nul[2];
    nul[0].role = "user"; nul[0].content = "hi";
    nul[1].role = "assistant"; nul[1].content = NULL;
    memset(&err, 0, sizeof err);
    check(tbc__chat_render("llama3", NULL, NULL, nul, 2, 1, buf, sizeof buf, &len, &err) == TBC_ERR_TEMPLATE &&
              strstr(err.message, "content") != NULL,
          "NULL content rejected");
    nul[1].role = NULL; nul[1].content = "x";
    check(tbc__chat_render("llama3", NULL, NULL, nul, 2, 1, buf, sizeof buf, &len, NULL) == TBC_ERR_TEMPLATE,
          "NULL role rejected");
    memset(&err, 0, sizeof err);
    check(tbc__chat_render("zephyr", NULL, NULL, conv, CONV_N, 1, buf, sizeof buf, &len, &err) == TBC_ERR_TEMPLATE &&
              strstr(err.message, "zephyr") != NULL,
          "unknown template name rejected");
    check(tbc__chat_render("chatml", NULL, NULL, NULL, 2, 1, buf, sizeof buf, &len, NULL) == TBC_ERR_INVALID_ARGUMENT,
          "NULL messages with n > 0");
    check(tbc__chat_render("chatml", NULL, NULL, conv, CONV_N, 1, NULL, 10, &len, NULL) == TBC_ERR_INVALID_ARGUMENT,
          "NULL buf with cap > 0");
    check(tbc__chat_render("chatml", NULL, NULL, conv, CONV_N, 1, buf, sizeof buf, NULL, NULL) ==
              TBC_ERR_INVALID_ARGUMENT,
          "NULL len");
}

int main(void) {
    test_renders();
    test_short_conversations();
    test_detect();
    test_buffers();
    test_errors();
    printf("test_chat: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
