"""ChatSampler and ToolSampler on a tiny random model (tests/tokenizer_util's chat
tokenizer), with replies scripted through allowed_tokens where the model must think or
call a tool.

Bounds, all exact (greedy, float32): each turn's reply equals Gemma4Sampler.sample on the
whole conversation rendered as one prompt (earlier thoughts left out), so the cache holds
what the model would have seen; a thinking budget of N leaves exactly N tokens in the
thought channel; pieces streamed equal the final output; the reply parser gives the same
chunks however a reply is split.
"""

from __future__ import annotations

import numpy as np
import pytest

import gemma4
from gemma4 import chat
from gemma4.chat import reply as reply_lib
from tests import tokenizer_util
from tests.compile_util import programs_compiled


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  path = tokenizer_util.build(tmp_path_factory.mktemp('tok') / 'chat.model', chat=True)
  return gemma4.Gemma4Tokenizer(path)


@pytest.fixture(scope='module')
def model():
  m = gemma4.models.tiny('e2b')
  return m, m.init(0)


SETTINGS = dict(cache_length=512, max_out_length=96, pad_length=(32, 64, 128, 256, 512))


def make(model, tok, cls=chat.ChatSampler, **kw):
  m, params = model
  return cls(model=m, params=params, tokenizer=tok, **{**SETTINGS, **kw})


def reference(model, tok, conversation, n):
  """The greedy reply to the whole conversation rendered as one prompt (a fresh cache)."""
  m, params = model
  s = gemma4.Gemma4Sampler(model=m, params=params, tokenizer=tok, **SETTINGS)
  out = s.sample(chat.render(conversation), max_new_tokens=n, return_state=True)
  return [int(t) for t in out.tokens if t]


def reply_ids(out):
  return list(out.tokens)


def script(tok, *parts):
  """allowed_tokens that forces the ids of `parts` (text or a tag), then lets go."""
  ids = [i for p in parts for i in tok.encode(p)]

  def allowed(so_far):
    return [ids[len(so_far)]] if len(so_far) < len(ids) else None

  return allowed


def test_every_turn_equals_sampling_the_whole_conversation(model, tok):
  s = make(model, tok, multi_turn=True, system='Be brief.')
  convo = [chat.System('Be brief.')]
  for prompt in ['Hello world', 'What is the capital of France?', 'One two three']:
    convo.append(chat.User(prompt))
    out = s.chat(prompt, max_new_tokens=6)
    assert reply_ids_from(s) == reference(model, tok, convo, 6)
    convo.append(s.turns[-1])
    assert isinstance(out, str) and out == out.text == s.turns[-1].text
  assert s.conversation == convo
  assert s.history_text().startswith(chat.render(convo[:-1]))


def reply_ids_from(s):
  return [int(t) for t in s.last_state.predicted_tokens[0] if t]


def test_earlier_thoughts_leave_the_history_and_the_cache(model, tok):
  s = make(model, tok, multi_turn=True, think=True)
  s.chat('Hi', max_new_tokens=4)
  first = s.turns[-1]
  out = s.chat('Hello world', max_new_tokens=40, allowed_tokens=script(
      tok, '<|channel>', 'thought\n', 'The quick brown', '<channel|>', 'Paris', '<turn|>'))
  assert (out.thoughts, out.text, out.stop_reason) == ('The quick brown', 'Paris', 'end_of_turn')
  assert out.turn == chat.Model(chat.Thought('The quick brown'), 'Paris')
  assert '<|channel>' in s.history_text()  # the cache holds the thought until the next turn
  s.chat('One two three', max_new_tokens=6)  # from the clean point: the start of turn 2
  convo = [chat.System(chat.THINK), chat.User('Hi'), first, chat.User('Hello world'),
           chat.Model('Paris'), chat.User('One two three')]
  assert reply_ids_from(s) == reference(model, tok, convo, 6)
  assert '<|channel>' not in s.history_text()
  assert s.history_text().startswith(chat.render(convo))


@pytest.mark.parametrize('budget', [1, 5])
def test_thinking_budget_closes_the_thought_after_exactly_n_tokens(model, tok, budget):
  s = make(model, tok, think=True, thinking_budget=budget)
  opened = script(tok, '<|channel>')
  out = s.chat('Hello world', max_new_tokens=12, allowed_tokens=opened)
  ids = reply_ids(out)
  open_, close = tok.token_id('<|channel>'), tok.token_id('<channel|>')
  assert ids[0] == open_ and close in ids
  assert ids.index(close) - 1 == budget  # tokens between the open and the close
  assert len(ids) == 12 and out.stop_reason == 'max_new_tokens'
  assert out.text == tok.decode(ids[ids.index(close) + 1:])  # the answer follows


def get_weather(city: str, days: int = 1) -> dict:
  """Gets the weather.

  Args:
    city: The city.
    days: How many days.
  """
  CALLS.append((city, days))
  return {'temperature': 21, 'sky': 'clear'}


CALLS = []


def test_tool_sampler_runs_the_call_and_continues_the_turn(model, tok):
  CALLS.clear()
  s = make(model, tok, cls=chat.ToolSampler, tools=[get_weather], multi_turn=True)
  call = '<|tool_call>call:get_weather{city:<|"|>Paris, "FR"<|"|>,days:2}<tool_call|>'
  out = s.chat('Weather in Paris?', max_new_tokens=96,
               allowed_tokens=script(tok, 'Let me check.', *tok.split(call), '<|tool_response>'))
  assert CALLS == [('Paris, "FR"', 2)]
  first, response, final = s.turns[-3], s.turns[-2], s.turns[-1]
  assert first == chat.Model('Let me check.', chat.ToolCall('get_weather', {'city': 'Paris, "FR"', 'days': 2}))
  assert response == chat.Model(chat.ToolResponse('get_weather', {'temperature': 21, 'sky': 'clear'}))
  convo = [chat.System(chat.Tool.from_function(get_weather)), chat.User('Weather in Paris?'),
           first, response]
  assert reply_ids(out) == reference(model, tok, convo, 96)  # the turn goes on from the response


def test_tool_sampler_stream_runs_the_call_and_streams_both_replies(model, tok):
  """Pieces of the first reply, the tool's answer, then the second reply's pieces; the
  pieces and the turns equal what chat() gives for the same script."""
  call = '<|tool_call>call:get_weather{city:<|"|>Oslo<|"|>}<tool_call|>'
  scripted = lambda: script(tok, 'Checking.', *tok.split(call), '<|tool_response>')
  CALLS.clear()
  want = make(model, tok, cls=chat.ToolSampler, tools=[get_weather])
  want_out = want.chat('Weather in Oslo?', max_new_tokens=96, allowed_tokens=scripted())
  CALLS.clear()
  s = make(model, tok, cls=chat.ToolSampler, tools=[get_weather])
  it = s.stream('Weather in Oslo?', max_new_tokens=96, allowed_tokens=scripted())
  pieces = list(it)
  assert CALLS == [('Oslo', 1)]
  channels = [p.channel for p in pieces]
  i = channels.index('tool_response')
  assert channels.count('tool_response') == 1 and channels[i - 1] == 'tool_call'
  assert pieces[i - 1].call == chat.ToolCall('get_weather', {'city': 'Oslo'})
  answer = chat.ToolResponse('get_weather', {'temperature': 21, 'sky': 'clear'})
  assert pieces[i].response == answer and pieces[i].text == answer.as_text()
  assert ''.join(p.text for p in pieces[:i - 1]) == 'Checking.'
  assert ''.join(p.text for p in pieces[i + 1:] if p.channel == 'answer') == it.output.text
  assert it.output == want_out and s.turns == want.turns
  assert reply_ids(it.output) == reply_ids(want_out)


def test_tool_sampler_stop_ends_the_reply_and_runs_no_tool(model, tok):
  CALLS.clear()
  s = make(model, tok, cls=chat.ToolSampler, tools=[get_weather])
  call = '<|tool_call>call:get_weather{city:<|"|>Oslo<|"|>}<tool_call|>'
  it = s.stream('Weather in Oslo?', max_new_tokens=96,
                allowed_tokens=script(tok, *tok.split(call), '<|tool_response>'))
  for piece in it:
    if piece.channel == 'tool_call':
      it.stop()
  assert CALLS == [] and it.output.stop_reason == 'interrupted'


def test_a_call_that_does_not_parse_is_kept_as_an_error(model, tok):
  s = make(model, tok)
  out = s.chat('Hi', max_new_tokens=40, allowed_tokens=script(
      tok, '<|tool_call>', 'call:f{a:', '<tool_call|>', '<turn|>'))
  assert out.tool_calls == ()
  (err,) = out.errors
  assert err.text == '<|tool_call>call:f{a:<tool_call|>'
  assert 'a value was expected' in err.error


def test_stream_pieces_add_up_to_the_output(model, tok):
  s = make(model, tok, think=True)
  call = '<|tool_call>call:f{x:[1,2]}<tool_call|>'
  it = s.stream('Hello world', max_new_tokens=40, allowed_tokens=script(
      tok, '<|channel>', 'thought\n', 'hm', '<channel|>', 'ok', *tok.split(call), '<turn|>'))
  pieces = list(it)
  out = it.output
  assert ''.join(p.text for p in pieces if p.channel == 'thought') == out.thoughts == 'hm'
  assert ''.join(p.text for p in pieces if p.channel == 'answer') == out.text == 'ok'
  assert [p.call for p in pieces if p.channel == 'tool_call'] == [chat.ToolCall('f', {'x': [1, 2]})]
  assert out.stop_reason == 'tool_call'


def test_without_multi_turn_each_chat_starts_afresh_and_reset_forgets(model, tok):
  s = make(model, tok)
  a = reply_ids(s.chat('Hello world', max_new_tokens=5))
  b = reply_ids(s.chat('Hello world', max_new_tokens=5))
  assert a == b == reference(model, tok, [chat.User('Hello world')], 5)
  assert len(s.turns) == 2
  s.reset()
  assert s.turns == [] and s.last_state is None and s.history_text() == ''


def test_parser_gives_the_same_chunks_however_the_reply_is_split(tok):
  text = ('<|channel>thought\nThe quick <channel|>Paris is <|tool_call>call:f{a:<|"|>x, y<|"|>,'
          'b:[1,{c:null}]}<tool_call|>two<|tool_call>call:g{}<tool_call|>')
  ids = tok.encode(text)
  p = reply_lib.ReplyParser(tok)
  pieces = [x for t in ids for x in p.add(t)] + p.finish()
  assert p.chunks == [chat.Thought('The quick '), 'Paris is ', chat.ToolCall('f', {'a': 'x, y', 'b': [1, {'c': None}]}),
                      'two', chat.ToolCall('g', {})]
  assert ''.join(x.text for x in pieces if x.channel == 'answer') == 'Paris is two'
  # A tag spelled out in ordinary characters is text, not a tag.
  p = reply_lib.ReplyParser(tok)
  spelled = [i for c in '<|channel>' for i in tok.encode(c)]
  for t in spelled + tok.encode('hi'):
    p.add(t)
  p.finish()
  assert p.chunks == ['<|channel>hi']


def test_an_unclosed_call_at_the_end_is_an_error(tok):
  p = reply_lib.ReplyParser(tok)
  for t in tok.encode('<|tool_call>call:f{a:1'):
    p.add(t)
  (err,) = p.finish()
  assert err.error == 'the reply ended before the call was closed'
  assert err.text == '<|tool_call>call:f{a:1'


def test_bad_arguments_are_refused_before_compute(model, tok):
  m, params = model
  with pytest.raises(ValueError, match=r'thinking_budget must be None or an int >= 1 \(tokens\), got 0'):
    make(model, tok, thinking_budget=0)
  with pytest.raises(TypeError, match=r'think must be True or False, got 1'):
    make(model, tok, think=1)
  with pytest.raises(ValueError, match=r"tools must have distinct names, got \['get_weather', 'get_weather'\]"):
    make(model, tok, tools=[get_weather, get_weather])
  with pytest.raises(TypeError, match=r'tools must be a sequence of tools, got dict'):
    make(model, tok, tools={'name': 'f'})
  s = make(model, tok)
  with pytest.raises(ValueError, match=r'the prompt has 2 <\|image\|> placeholders but 1 images'):
    s.chat('a <|image|> b <|image|>', images=[np.zeros((8, 8, 3), np.uint8)])
  with pytest.raises(TypeError, match=r'prompt must be a str, a Turn or a non-empty list of Turns, got int'):
    s.chat(3)
  with pytest.raises(TypeError, match=r'allowed_tokens must be None or a function'):
    s.chat('Hi', allowed_tokens=[1, 2])
  assert s.turns == [] and s.last_state is None  # nothing half-done
  g3 = gemma4.models.tiny('gemma3_270m')
  with pytest.raises(ValueError, match=r"is a Gemma 3 model: it has no thinking"):
    chat.ChatSampler(model=g3, params=g3.init(0), tokenizer=tok, think=True)


def test_gemma3_chat_puts_the_system_text_in_the_first_user_turn(tok):
  g3 = gemma4.models.tiny('gemma3_270m')
  params = g3.init(0)
  g3tok = gemma4.tokenizer.Gemma3Tokenizer(tok.path)
  s = chat.ChatSampler(model=g3, params=params, tokenizer=g3tok, system='Be brief.',
                       multi_turn=True, **SETTINGS)
  s.chat('Hello world', max_new_tokens=4)
  assert s.history_text().startswith('<start_of_turn>user\nBe brief.\n\nHello world<end_of_turn>\n'
                                     '<start_of_turn>model\n')


@pytest.mark.parametrize('stop', ['quick', ['zzz', 'k bro'], 'The'])
def test_stop_strings_end_the_answer_before_them_across_pieces(model, tok, stop):
  s = make(model, tok, multi_turn=True)
  text = 'The quick brown fox'
  forced = tok.encode(text)
  pieces = list(it := s.stream('Hello world', max_new_tokens=40, stop=stop, allowed_tokens=(
      lambda ids: [forced[len(ids)]] if len(ids) < len(forced) else None)))
  out = it.output
  first = min(i for i in (text.find(x) for x in ([stop] if isinstance(stop, str) else stop)) if i >= 0)
  assert out.text == text[:first] == ''.join(p.text for p in pieces)
  assert out.stop_reason == 'stop'
  assert s.turns[-1] == chat.Model(text[:first]) if first else chat.Model()
  s.chat('One two three', max_new_tokens=4)  # the history holds the answer without it
  convo = [chat.User('Hello world'), s.turns[1], chat.User('One two three')]
  assert reply_ids_from(s) == reference(model, tok, convo, 4)


def test_penalties_and_bias_equal_a_numpy_reference_and_do_not_recompile(model, tok):
  m, params = model
  s = gemma4.Gemma4Sampler(model=m, params=params, tokenizer=tok, **SETTINGS)
  prompt_ids = tok.encode('Hello world', add_bos=True)
  compiled = []
  for rep, pres, freq, bias in [(1.3, 0.0, 0.0, {}), (1.0, 1.5, 0.5, {}),
                                (0.8, -0.5, 2.0, {tok.decode([100]): 50.0, 7: -100.0})]:
    outs = []
    compiled.append(programs_compiled(lambda: outs.append(s.sample(
        'Hello world', max_new_tokens=8, return_state=True, repetition_penalty=rep,
        presence_penalty=pres, frequency_penalty=freq, logit_bias=bias))))
    out, = outs
    seq, want = list(prompt_ids), []
    counts = np.zeros(m.config.vocab_size)
    bias_row = np.zeros(m.config.vocab_size)
    for k, v in bias.items():
      bias_row[tok.token_id(k)] = v
    for _ in range(8):
      logits = np.array(m.apply(params, np.asarray([seq]))[0][0, -1], np.float64)
      seen = np.zeros(m.config.vocab_size, bool)
      seen[seq] = True
      logits = np.where(seen, np.where(logits > 0, logits / rep, logits * rep), logits)
      logits = logits - pres * (counts > 0) - freq * counts + bias_row
      t = int(logits.argmax())
      want.append(t)
      seq.append(t)
      counts[t] += 1
    assert [int(t) for t in out.tokens[:8]] == want
  # one compiled decode loop for all values
  assert 'jit(loop)' in compiled[0] and not any('jit(loop)' in c for c in compiled[1:])
  with pytest.raises(ValueError, match=r'presence_penalty must be in \[-2.0, 2.0\], got 3'):
    s.sample('Hi', presence_penalty=3)
  with pytest.raises(ValueError, match=r'repetition_penalty must be > 0 \(1 = off\), got 0'):
    s.sample('Hi', repetition_penalty=0)
  with pytest.raises(ValueError, match=r"logit_bias\[5\] must be in \[-100.0, 100.0\], got 200"):
    s.sample('Hi', logit_bias={5: 200})
  with pytest.raises(ValueError, match=r"'zzzq' is not in the vocabulary|must be exactly one token"):
    s.sample('Hi', logit_bias={'zzzq': 1})


def test_images_and_audio_in_later_turns_equal_sampling_the_whole_conversation(tok):
  m = gemma4.models.tiny('e2b', text_only=False)
  params = m.init(0)
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
  clip = rng.uniform(-0.5, 0.5, 8000).astype(np.float32)
  kw = dict(cache_length=512, max_out_length=6, pad_length=(128, 256, 512), max_soft_tokens=70)
  s = chat.ChatSampler(model=m, params=params, tokenizer=tok, multi_turn=True, **kw)
  s.chat('Hello world', max_new_tokens=3)
  s.chat('Look: <|image|> and hear', images=[img], audio=[clip], max_new_tokens=4)
  convo = s.conversation
  assert [type(c).__name__ for c in convo[2].chunks] == ['str', 'Image', 'str', 'Audio']
  ref = gemma4.Gemma4Sampler(model=m, params=params, tokenizer=tok, **kw)
  want = ref.sample(chat.render(convo[:3]), images=[img], audio=[clip], max_new_tokens=4,
                    return_state=True)
  assert reply_ids_from(s) == [int(t) for t in want.tokens if t]


ALARM = {'name': 'set_alarm', 'description': 'Sets an alarm.', 'parameters': {
    'type': 'object', 'required': ['hour', 'am', 'days'], 'properties': {
        'hour': {'type': 'integer'}, 'am': {'type': 'boolean'},
        'days': {'type': 'array', 'maxItems': 3, 'items': {'enum': ['mon', 'tue', 'sun']}},
        'label': {'type': 'string', 'maxLength': 8}}}}


def test_a_call_the_model_opens_is_held_to_a_declared_tool_and_its_schema(model, tok):
  import jsonschema
  s = make(model, tok, tools=[ALARM, get_weather], cache_length=2048)
  for seed in range(3):
    out = s.chat('Wake me up', max_new_tokens=96, rng=seed, sampling=gemma4.sampling.RandomSampling(),
                 allowed_tokens=script(tok, '<|tool_call>', 'call:set_alarm'))
    (call,) = out.tool_calls
    assert call.name == 'set_alarm' and out.errors == () and out.stop_reason != 'cache_full'
    jsonschema.validate(call.arguments, ALARM['parameters'])
  free = make(model, tok, tools=[ALARM], constrain_tool_calls=False)
  out = free.chat('Wake me up', max_new_tokens=24, allowed_tokens=script(tok, '<|tool_call>'))
  assert out.tool_calls == ()  # unconstrained, a random model writes no valid call
