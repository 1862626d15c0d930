"""The small shared vocabulary every built-in task draws from.

All tasks (and the pretraining corpus) are generated from these lists, so a tokenizer of a few
thousand ids covers every word, and what a model learns about "Anna" or "the park" in one task
can transfer to another, which is the point of multitask fine-tuning.

The invented language "Zorbish" (for the toy translation task) lives here as well: a lexicon
plus three grammar rules, described in `tasks.py` next to the translator.
"""

NAMES = ("Anna Ben Carla David Emma Felix Grace Hugo Iris Jack Kate Leo Mia Noah Olga Paul "
         "Rosa Sam Tina Victor").split()
PLACES = ("park cafe library cinema beach museum station market school office garden "
          "restaurant gym lake bakery hotel").split()
TIMES = ("on Monday|on Tuesday|on Wednesday|on Thursday|on Friday|on Saturday|on Sunday|"
         "tomorrow|tonight|this evening|next week|at noon|at six|at seven|after lunch").split("|")
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
ACTIVITIES = ("play tennis|watch a movie|study for the exam|have lunch|go swimming|read books|"
              "go shopping|cook dinner|play chess|go running|paint a picture|walk the dog|"
              "bake a cake|practice the piano|fix the bike").split("|")
CHORES = ("work late|clean the kitchen|finish a report|see the doctor|help a neighbor|"
          "study for a test|visit my grandmother").split("|")
ITEMS = "keys phone umbrella wallet book bag glasses jacket notebook camera".split()
FOODS = "apples eggs bananas oranges tomatoes lemons cookies potatoes".split()
EVENTS = "meeting dinner lesson game trip class party".split()
NUMBER_WORDS = "zero one two three four five six seven eight nine ten".split()

# --- sentiment -------------------------------------------------------------------------
REVIEW_SUBJECTS = "movie food service hotel book concert room staff music game".split()
POSITIVE_ADJECTIVES = "great wonderful excellent lovely amazing perfect pleasant brilliant".split()
NEGATIVE_ADJECTIVES = "terrible awful boring horrible disappointing bad dull poor".split()
POSITIVE_VERBS = ("loved", "enjoyed", "really liked", "adored")
NEGATIVE_VERBS = ("hated", "disliked", "did not like", "could not stand")
POSITIVE_CLOSINGS = ("I would come again.", "I would recommend it to a friend.",
                     "Five stars.", "What a nice surprise.")
NEGATIVE_CLOSINGS = ("I will never come back.", "I would not recommend it.",
                     "One star.", "What a waste of time.")

# --- antonyms (held-out task) ------------------------------------------------------------
ANTONYMS = dict(pair.split("/") for pair in (
    "big/small old/young happy/sad quick/slow tall/short hot/cold good/bad early/late "
    "loud/quiet rich/poor light/dark clean/dirty").split())
ANTONYMS.update({b: a for a, b in list(ANTONYMS.items())})  # make the relation symmetric

# --- the invented language, Zorbish --------------------------------------------------------
# English noun -> (English plural, Zorbish stem). Zorbish marks the plural with the suffix -li.
NOUNS = {
    "cat": ("cats", "miro"), "dog": ("dogs", "vasku"), "bird": ("birds", "tupi"),
    "child": ("children", "nelo"), "teacher": ("teachers", "sarun"),
    "farmer": ("farmers", "gomal"), "fox": ("foxes", "pelu"), "horse": ("horses", "dravo"),
    "friend": ("friends", "amik"), "doctor": ("doctors", "medra"), "king": ("kings", "roval"),
    "boy": ("boys", "tobo"), "baker": ("bakers", "panek"), "student": ("students", "kalu"),
    "queen": ("queens", "reva"),
}
# English adjective -> Zorbish adjective (placed AFTER its noun in Zorbish).
ADJECTIVES = {
    "big": "bora", "small": "sema", "old": "garo", "young": "tini", "happy": "felu",
    "sad": "tusko", "red": "rumi", "tall": "lanto", "quick": "zipa", "lazy": "molo",
    "clever": "sabi",
}
# English verb -> (3rd person singular, past tense, Zorbish stem). Zorbish puts the verb LAST
# and marks the past tense with the suffix -ta.
VERBS = {
    "see": ("sees", "saw", "vim"), "like": ("likes", "liked", "amo"),
    "help": ("helps", "helped", "dun"), "follow": ("follows", "followed", "sek"),
    "find": ("finds", "found", "trov"), "call": ("calls", "called", "kel"),
    "watch": ("watches", "watched", "obe"), "feed": ("feeds", "fed", "nut"),
    "meet": ("meets", "met", "ren"), "teach": ("teaches", "taught", "doki"),
    "carry": ("carries", "carried", "pora"), "chase": ("chases", "chased", "kasu"),
}
# English place -> Zorbish place; "in the park" becomes "parel ne" (a postposition).
LOCATIONS = {
    "park": "parel", "garden": "olva", "market": "bazu", "school": "skira", "house": "domu",
    "forest": "silva", "river": "fluro", "city": "urba",
}
ZORBISH_PLURAL = "li"
ZORBISH_PAST = "ta"
ZORBISH_OBJECT_MARKER = "ka"
ZORBISH_LOCATIVE = "ne"

# --- short news reports (the news_summary task) --------------------------------------------
TEAMS = "Lions Tigers Eagles Wolves Bears Sharks Falcons Rangers".split()
SHOPS = ["bakery", "bookshop", "flower shop", "toy shop", "bike shop", "music shop"]
CLUBS = "chess club|garden club|book club|running club|music school|art class".split("|")
NEWS_FILLERS = ("The weather was cold.", "It was a sunny day.", "Many people came to see it.",
                "Everyone seemed happy.", "More news will follow next week.", "Nobody was hurt.")
