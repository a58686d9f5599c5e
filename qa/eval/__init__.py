"""Evaluation: question sets, the end-to-end run (:func:`evaluate`), retrieval metrics and reports.

    from qa.eval import evaluate
    evaluation = evaluate("squad-gold", limit=200, data="../shared/data")
    print(evaluation.results[0].metrics["exact_match"])
"""

from qa.eval.question_sets import QUESTION_SETS, QuestionSet, load_question_set
from qa.eval.runner import Evaluation, SettingResult, evaluate, prepare_index

__all__ = ["QUESTION_SETS", "Evaluation", "QuestionSet", "SettingResult", "evaluate", "load_question_set", "prepare_index"]
