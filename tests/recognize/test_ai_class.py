"""The seeds' AI class end to end through the gateway (emulator/classroom.py): a lesson playlist is
pushed, a student answers aloud, recognize_stream posts the sentence to a decision endpoint, which
switches the push (push_control with the push's controlToken) to the feedback; a viewer in the room
must see the feedback segment's pictures (each segment is one gray level)."""
from __future__ import annotations

import pytest

from emulator.classroom import AiClass, SpeechUnavailable, lesson_dir, make_lesson, speech


@pytest.fixture
def ai_class(cloud):
    try:
        speech("triangle")
    except SpeechUnavailable as e:
        pytest.skip(str(e))
    info = cloud.info()
    room = AiClass(info, make_lesson(lesson_dir(info, "ai-class"), filler_s=20.0, feedback_s=1.5))
    yield room
    room.close()


def test_a_wrong_answer_gets_try_again_and_the_right_one_the_right_answer_segment(ai_class: AiClass):
    ai_class.start()
    wrong = ai_class.answer("i think it is a square")
    assert "square" in wrong.heard.split()
    assert (wrong.feedback, wrong.seen) == ("try-again", "try-again")
    ai_class.back_to_filler()
    right = ai_class.answer("it is a triangle")
    assert "triangle" in right.heard.split()
    assert (right.feedback, right.seen) == ("right", "right")
    assert ai_class.endpoint is not None
    # Both switches were proven by the controlToken alone (push_control refuses a call without proof).
    assert [d.status for d in ai_class.endpoint.decisions] == [200, 200]
    assert all(d.answer["state"]["videoSrc"] == str(d.feedback.path) for d in ai_class.endpoint.decisions)
    # The viewer saw the right-answer pictures only after the student spoke.
    lesson = ai_class.lesson
    assert ai_class.viewer is not None
    assert ai_class.viewer.first(lesson.right.level, 0.0) == ai_class.viewer.first(lesson.right.level, right.speech_end)
